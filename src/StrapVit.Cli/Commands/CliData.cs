using StrapVit.Core.Datasets;
using StrapVit.Core.Evaluation;
using StrapVit.Core.Models;

namespace StrapVit.Cli.Commands;

/// <summary>Labelled image sets for the evaluation verbs.</summary>
internal static class CliData
{
    /// <summary>An IDX image file (labels beside it) or a folder tree with one subfolder per class.</summary>
    public static EvaluationSet Load(string path, ModelPackage package, int count)
    {
        var input = package.Manifest.Input;
        if (Directory.Exists(path))
        {
            return EvaluationSet.FromFolder(path, package.Manifest.Labels, count, input.Channels, input.Height, input.Width);
        }

        return EvaluationSet.FromIdx(IdxDataset.Load(path, LabelsFor(path)), count, input.Channels, input.Height, input.Width);
    }

    public static string LabelsFor(string images) =>
        IdxDataset.LabelsBeside(images) is var labels && File.Exists(labels)
            ? labels
            : throw new CliUsageException($"no labels file next to {images}");
}
