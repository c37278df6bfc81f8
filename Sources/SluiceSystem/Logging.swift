import Logging

extension Logger {
    /// A logger that drops everything: the default of every Sluice configuration, so the library
    /// stays silent unless its host hands it a logger.
    public static var disabled: Logger { Logger(label: "sluice.disabled") { _ in SwiftLogNoOpLogHandler() } }
}
