/// This build of Sluice.
public enum SluiceVersion {
    /// The version, as `sluice --version` prints it.
    public static let current = "0.6.0"
}
