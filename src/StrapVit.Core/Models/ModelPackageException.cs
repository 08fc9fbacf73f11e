namespace StrapVit.Core.Models;

/// <summary>A model package that cannot be used; the message is one line naming what is wrong.</summary>
public sealed class ModelPackageException : Exception
{
    public ModelPackageException(string message) : base(message) { }

    public ModelPackageException(string message, Exception inner) : base(message, inner) { }
}
