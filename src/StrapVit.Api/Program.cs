using StrapVit.Api.Attacks;
using StrapVit.Api.Defense;
using StrapVit.Api.Endpoints;
using StrapVit.Api.Explain;
using StrapVit.Api.Hosting;

var builder = WebApplication.CreateBuilder(args);
builder.AddStrapVitLogging();
builder.Services.AddStrapVitModel(builder.Configuration);
builder.Services.AddStrapVitApi();
builder.Services.AddStrapVitAttacks(builder.Configuration);

var app = builder.Build();
app.UseStrapVitRequestLogging();
app.UseStrapVitPipeline();
app.MapStrapVitOperations();
app.MapModelEndpoints();
app.MapClassifyEndpoints();
app.MapAttackEndpoints();
app.MapSaliencyEndpoints();
app.MapPatchJobEndpoints();
app.MapDefenseEndpoints();
app.Run();

/// <summary>Entry point, public for WebApplicationFactory.</summary>
public partial class Program;
