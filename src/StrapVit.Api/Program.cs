using Serilog;
using StrapVit.Api.Defense;
using StrapVit.Api.Endpoints;
using StrapVit.Api.Hosting;

var builder = WebApplication.CreateBuilder(args);
builder.AddStrapVitLogging();
builder.Services.AddStrapVitModel(builder.Configuration);
builder.Services.AddStrapVitApi();

var app = builder.Build();
app.UseSerilogRequestLogging();
app.UseStrapVitPipeline();
app.MapStrapVitOperations();
app.MapModelEndpoints();
app.MapClassifyEndpoints();
app.MapDefenseEndpoints();
app.Run();

/// <summary>Entry point, public for WebApplicationFactory.</summary>
public partial class Program;
