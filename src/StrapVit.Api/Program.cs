using StrapVit.Api.Attacks;
using StrapVit.Api.Auth;
using StrapVit.Api.Classify;
using StrapVit.Api.Defense;
using StrapVit.Api.Explain;
using StrapVit.Api.Hosting;
using StrapVit.Api.InferenceProtocol;
using StrapVit.Api.Model;
using StrapVit.Api.Observability;
using StrapVit.Api.Patches;
using StrapVit.Api.Serving;
using StrapVit.Api.Uploads;

var builder = WebApplication.CreateBuilder(args);
builder.AddStrapVitSecrets();
builder.AddStrapVitLogging();
builder.AddStrapVitTelemetry();
builder.Services.AddStrapVitModel(builder.Configuration);
builder.Services.AddStrapVitBatching(builder.Configuration);
builder.Services.AddStrapVitUploads(builder.Configuration);
builder.Services.AddStrapVitApi();
builder.Services.AddStrapVitDefense(builder.Configuration);
builder.Services.AddStrapVitClassify();
builder.Services.AddStrapVitAttacks(builder.Configuration);
builder.Services.AddStrapVitPatchJobs(builder.Configuration);
builder.Services.AddStrapVitAuth(builder.Configuration);
builder.Services.AddStrapVitInferenceProtocol(builder.Configuration);

var app = builder.Build();
app.UseStrapVitRequestLogging();
app.UseStrapVitPipeline();
app.MapStrapVitOperations();
app.MapModelEndpoints();
// Classification is open unless Auth:RequireForClassify; attacks, explain and patch jobs take a key of their own.
var classification = app.MapGroup("").RequireClassifyKey();
classification.MapClassifyEndpoints();
classification.MapInspectEndpoints();
app.MapAttackEndpoints();
app.MapSaliencyEndpoints();
app.MapPatchJobEndpoints();
app.MapInferenceProtocolEndpoints();
return StartupFailure.Run(app);

/// <summary>Entry point, public for WebApplicationFactory.</summary>
public partial class Program;
