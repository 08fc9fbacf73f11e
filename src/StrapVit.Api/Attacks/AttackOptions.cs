namespace StrapVit.Api.Attacks;

/// <summary>Configuration section <c>Attacks</c>: per-request limits of the attack, saliency and patch-job endpoints.</summary>
public sealed class AttackOptions
{
    public const string SectionName = "Attacks";

    /// <summary>Attack and saliency requests running at once; past it the answer is 429 with Retry-After.</summary>
    public int MaxConcurrentAttacks { get; set; } = 4;

    /// <summary>Seconds a refused client is told to wait.</summary>
    public int RetryAfterSeconds { get; set; } = 2;

    /// <summary>Largest L∞ ε (FGSM, PGD with norm=linf), in [0, 1] pixel space.</summary>
    public float MaxLinfEpsilon { get; set; } = 0.5f;

    /// <summary>Largest L2 ε (PGD with norm=l2).</summary>
    public float MaxL2Epsilon { get; set; } = 20f;

    /// <summary>Most PGD steps.</summary>
    public int MaxSteps { get; set; } = 1000;

    /// <summary>Most PGD restarts.</summary>
    public int MaxRestarts { get; set; } = 10;

    /// <summary>Most DeepFool iterations.</summary>
    public int MaxIterations { get; set; } = 200;

    /// <summary>Largest DeepFool overshoot.</summary>
    public float MaxOvershoot { get; set; } = 1f;

    /// <summary>Largest patch side in pixels (also capped by the image size).</summary>
    public int MaxPatchSize { get; set; } = 16;

    /// <summary>Most per-image patch steps.</summary>
    public int MaxPatchSteps { get; set; } = 2000;

    /// <summary>Largest batch one gradient run may take (restarts, DeepFool candidates, patch training).</summary>
    public int MaxBatchSize { get; set; } = 64;

    public UniversalPatchJobOptions Universal { get; set; } = new();

    /// <summary>The first problem with these values, or null.</summary>
    public string? Validate()
    {
        if (MaxConcurrentAttacks < 1) return "Attacks:MaxConcurrentAttacks must be at least 1.";
        if (RetryAfterSeconds < 1) return "Attacks:RetryAfterSeconds must be at least 1.";
        if (!(MaxLinfEpsilon > 0) || !(MaxL2Epsilon > 0)) return "Attacks:MaxLinfEpsilon and MaxL2Epsilon must be positive.";
        if (MaxSteps < 1 || MaxRestarts < 1 || MaxIterations < 1 || MaxPatchSteps < 1) return "Attacks: step, restart and iteration limits must be at least 1.";
        if (!(MaxOvershoot >= 0)) return "Attacks:MaxOvershoot must be at least 0.";
        if (MaxPatchSize < 1) return "Attacks:MaxPatchSize must be at least 1.";
        if (MaxBatchSize < 1) return "Attacks:MaxBatchSize must be at least 1.";
        return Universal.Validate();
    }
}

/// <summary>Configuration section <c>Attacks:Universal</c>: universal-patch training jobs.</summary>
public sealed class UniversalPatchJobOptions
{
    /// <summary>Jobs training at once on one replica (each on a worker of the job runner); more wait in its queue.</summary>
    public int MaxRunningJobs { get; set; } = 1;

    /// <summary>Jobs waiting for a free runner on one replica (each reports its position); past it <c>POST /v1/patches</c> answers 429.</summary>
    public int MaxQueuedJobs { get; set; } = 8;

    /// <summary>Most training steps per job.</summary>
    public int MaxSteps { get; set; } = 5000;

    /// <summary>Largest images per training step.</summary>
    public int MaxBatchSize { get; set; } = 64;

    /// <summary>How long a finished job (and its patch) stays readable.</summary>
    public int RetentionMinutes { get; set; } = 60;

    /// <summary>Jobs kept at most in memory (finished ones are dropped oldest first); Redis keeps them for the retention time.</summary>
    public int MaxJobs { get; set; } = 32;

    /// <summary>Training images, gzipped IDX (relative paths resolve against the application directory, where the build copies the defaults).</summary>
    public string TrainImages { get; set; } = "samples/fashion-mnist/calib-500-images-idx3-ubyte.gz";

    public string TrainLabels { get; set; } = "samples/fashion-mnist/calib-500-labels-idx1-ubyte.gz";

    /// <summary>Held-out images the finished patch's success rate is measured on.</summary>
    public string HoldOutImages { get; set; } = "samples/fashion-mnist/test-1000-images-idx3-ubyte.gz";

    public string HoldOutLabels { get; set; } = "samples/fashion-mnist/test-1000-labels-idx1-ubyte.gz";

    /// <summary>Held-out images used at most.</summary>
    public int MaxHoldOut { get; set; } = 500;

    public string? Validate()
    {
        if (MaxRunningJobs < 1 || MaxQueuedJobs < 1 || MaxSteps < 1 || MaxBatchSize < 1 || RetentionMinutes < 1 || MaxJobs < 1 || MaxHoldOut < 1)
        {
            return "Attacks:Universal limits must be at least 1.";
        }

        return null;
    }
}
