/// A failure of the runtime: a worker that could not start or failed, a configuration that
/// cannot run. When a system call is behind it, ``cause`` holds that error unchanged.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, in a sentence.
    public var description: String
    /// The system call behind it, if one is.
    public var cause: SystemCallError?

    /// An error with its message.
    public init(_ description: String) { self.description = description }

    /// An error that passes on a system call's failure, with what was being done around it.
    public init(_ cause: SystemCallError, context: String? = nil) {
        self.cause = cause
        description = context.map { "\($0): \(cause)" } ?? "\(cause)"
    }
}
