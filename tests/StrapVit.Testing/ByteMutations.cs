namespace StrapVit.Testing;

/// <summary>Seeded byte-level mutations for the decoder and upload fuzz tests.</summary>
public static class ByteMutations
{
    /// <summary>One to four edits: overwrite, flip a bit, insert, delete a run, or write 0x00/0xFF extremes.</summary>
    public static byte[] Mutate(byte[] source, Random random)
    {
        var bytes = new List<byte>(source);
        var edits = random.Next(1, 5);
        for (var e = 0; e < edits && bytes.Count > 0; e++)
        {
            var at = random.Next(bytes.Count);
            switch (random.Next(5))
            {
                case 0: bytes[at] = (byte)random.Next(256); break;
                case 1: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 2: bytes.Insert(at, (byte)random.Next(256)); break;
                case 3: bytes.RemoveRange(at, Math.Min(random.Next(1, 16), bytes.Count - at)); break;
                default:
                    for (var k = 0; k < 4 && at + k < bytes.Count; k++) bytes[at + k] = random.Next(2) == 0 ? (byte)0xFF : (byte)0x00;
                    break;
            }
        }

        return [.. bytes];
    }
}
