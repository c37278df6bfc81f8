import Foundation
import Testing

/// Runs Python's `jsonschema` against one of the package's schema files (`Benchmarks/*.schema.json`):
/// the JSON the commands print is checked by an implementation that is not ours.
public struct SchemaValidator {
    let python: String
    let schema: URL

    /// A validator for `schema`, a path from the package root.
    public init(schema path: String) throws {
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        schema = packageRoot.appendingPathComponent(path)
        let onPath = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            .map { "\($0)/python3" }
        var seen = Set<String>()
        let candidates = (["/usr/bin/python3"] + onPath).filter { path in
            FileManager.default.isExecutableFile(atPath: path) && seen.insert(path).inserted
        }
        let found = candidates.first { (try? Self.run($0, ["-c", "import jsonschema"]).status) == 0 }
        python = try #require(found, """
            no python3 with the jsonschema module (tried \(candidates.joined(separator: ", "))): \
            apt-get install python3-jsonschema
            """)
    }

    /// Whether `json` is valid, and what Python said about it.
    public func validate(_ json: Data) throws -> (valid: Bool, output: String) {
        let file = FileManager.default.temporaryDirectory
            .appendingPathComponent("sluice-schema-\(UUID().uuidString).json")
        try json.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let script = "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))"
        let result = try Self.run(python, ["-c", script, file.path, schema.path])
        return (result.status == 0, result.output)
    }

    /// Whether `text` is valid JSON for the schema.
    public func validate(_ text: String) throws -> (valid: Bool, output: String) {
        try validate(Data(text.utf8))
    }

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}
