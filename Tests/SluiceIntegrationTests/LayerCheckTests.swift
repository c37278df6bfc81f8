import Foundation
import SluiceTestSupport
import Testing

/// `Tests/Scripts/check-layers.sh` (`make layers`): the real tree keeps to the layer map in
/// README.md, and the script catches a low layer importing a high one, a backend importing another
/// backend, and a target the map does not list (each on a copy of README.md and Sources).
@Suite("Layer check") struct LayerCheckTests {
    /// The repository: this file is ROOT/Tests/SluiceIntegrationTests/LayerCheckTests.swift.
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let script = root.appendingPathComponent("Tests/Scripts/check-layers.sh")

    /// Runs `executable arguments…` to its end; returns its exit status and its stdout and stderr.
    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let child = try ChildProcess(executable, arguments)
        let status = child.waitForExit(timeout: .seconds(60)) ?? -1
        return (status, child.text)
    }

    /// Runs the layer check with `root` as ROOT.
    static func check(_ root: URL) throws -> (status: Int32, output: String) {
        try run("/bin/bash", [script.path, root.path])
    }

    /// Calls `body` with a fresh directory holding copies of README.md and Sources; removes it after.
    static func withCopy(_ body: (URL) throws -> Void) throws {
        let copy = FileManager.default.temporaryDirectory
            .appendingPathComponent("sluice-layers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: copy) }
        let copied = try run("/bin/cp", ["-r", root.appendingPathComponent("README.md").path,
                                         root.appendingPathComponent("Sources").path, copy.path])
        try #require(copied.status == 0, "cp: \(copied.output)")
        try body(copy)
    }

    /// The first Swift file (in path order) under Sources/`target` of `root`, relative to `root`.
    static func swiftFile(of target: String, in root: URL) throws -> String {
        let directory = "Sources/\(target)"
        let files = FileManager.default.enumerator(atPath: root.appendingPathComponent(directory).path)?
            .compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.sorted() ?? []
        let file = try #require(files.first, "no Swift file under \(directory)")
        return "\(directory)/\(file)"
    }

    /// Appends the line `text` to the file at `path` under `root`.
    static func append(_ text: String, to path: String, in root: URL) throws {
        let handle = try FileHandle(forWritingTo: root.appendingPathComponent(path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("\n\(text)\n".utf8))
    }

    @Test("the repository keeps to the layer map")
    func repositoryConforms() throws {
        let result = try Self.check(Self.root)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("all allowed"))
    }

    /// A low layer importing a high one, and a backend importing another backend.
    @Test(arguments: [("SluiceCore", "SluiceXDP"), ("SluiceURing", "SluiceSockets")])
    func aForbiddenImportFails(target: String, imported: String) throws {
        try Self.withCopy { copy in
            let file = try Self.swiftFile(of: target, in: copy)
            try Self.append("import \(imported)", to: file, in: copy)
            let result = try Self.check(copy)
            #expect(result.status == 1, "\(result.output)")
            #expect(result.output.contains("\(file):"), "\(result.output)")
            #expect(result.output.contains("\(target) imports \(imported)"), "\(result.output)")
        }
    }

    @Test("a target missing from the layer map fails")
    func unmappedTargetFails() throws {
        try Self.withCopy { copy in
            let rogue = copy.appendingPathComponent("Sources/SluiceRogue")
            try FileManager.default.createDirectory(at: rogue, withIntermediateDirectories: true)
            try Data("import SluiceCore\n".utf8).write(to: rogue.appendingPathComponent("Rogue.swift"))
            let result = try Self.check(copy)
            #expect(result.status == 1, "\(result.output)")
            #expect(result.output.contains("target SluiceRogue is not in the layer map"), "\(result.output)")
        }
    }
}
