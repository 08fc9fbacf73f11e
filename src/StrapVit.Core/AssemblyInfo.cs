namespace StrapVit.Core;

/// <summary>Marker type for assembly scanning and tests.</summary>
public static class CoreAssembly;
