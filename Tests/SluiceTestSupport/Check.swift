import Testing

/// `#expect` for conditions that read `~Copyable` values (batches, ports), which the macro
/// cannot take apart: the condition is evaluated first, then recorded at the caller's line.
public func check(_ condition: Bool, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(condition, comment, sourceLocation: sourceLocation)
}
