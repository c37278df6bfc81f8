// SluiceBPFPlugin: compiles the package's XDP programs (bpf/*.bpf.c) with clang and embeds the
// object bytes in the target the plugin is applied to, so a package that depends on Sluice
// gets the programs without running make.
//
// For every bpf/NAME.bpf.c under the package root it emits one build command that runs
// SluiceBPFEmbed, which compiles the file (`clang -O2 -g -target bpf`), strips DWARF (BTF is
// kept), and writes `BPF_NAME.swift` declaring `EmbeddedBPFObjects.nameInLowerCamelCase`.
// A source file may declare extra builds of itself with a comment line such as
//
//     // sluice-bpf-variant: xsk_redirect_frags -DSLUICE_FRAGS
//
// (a name, then -D/-U flags), which adds `EmbeddedBPFObjects.xskRedirectFrags`. One more
// command writes `EmbeddedBPFObjects.swift`: the enum itself, the decoder and `all`.
//
// SwiftPM re-runs this plugin only when it regenerates its build manifest (Package.swift or a
// target's directory changed), not when files appear in or vanish from bpf/: after adding or
// removing a .bpf.c or .h, or adding a variant line, touch Package.swift. Edits to existing
// files are tracked: the command re-runs for its .c and for any bpf/*.h.
//
// clang: $SLUICE_BPF_CLANG if set; else the newest clang-NN, then `clang`, on PATH (and in
// /usr/bin), skipping Swift toolchains' clang; else a toolchain clang that lists the bpf target.
import Foundation
import PackagePlugin

@main
struct SluiceBPFPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) async throws -> [Command] {
        let bpfDirectory = context.package.directoryURL.appending(path: "bpf", directoryHint: .isDirectory)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: bpfDirectory.path)) ?? []
        let sources = names.filter { $0.hasSuffix(".bpf.c") }.sorted()
        let headers = names.filter { $0.hasSuffix(".h") }.sorted().map { bpfDirectory.appending(path: $0) }
        let embed = try context.tool(named: "SluiceBPFEmbed").url
        let work = context.pluginWorkDirectoryURL

        var objects: [BPFObject] = []
        for file in sources {
            let source = bpfDirectory.appending(path: file)
            let base = String(file.dropLast(".bpf.c".count))
            objects.append(BPFObject(name: base, source: source, flags: []))
            let text = (try? String(contentsOf: source, encoding: .utf8)) ?? ""
            for variant in try Self.variants(in: text, file: file) {
                objects.append(BPFObject(name: variant.name, source: source, flags: variant.flags))
            }
        }
        var seen: [String: String] = [:]
        for object in objects {
            if let other = seen.updateValue(object.name, forKey: object.identifier) {
                throw PluginError("bpf objects '\(other)' and '\(object.name)' both map to the Swift name '\(object.identifier)'")
            }
        }

        let index = work.appending(path: "EmbeddedBPFObjects.swift")
        var commands: [Command] = [
            .buildCommand(
                displayName: "Generating EmbeddedBPFObjects.swift",
                executable: embed,
                arguments: ["--index", index.path] + objects.map { "\($0.identifier)=\($0.name)" },
                inputFiles: [],
                outputFiles: [index]),
        ]
        guard !objects.isEmpty else { return commands }

        let clang = try Self.findClang()
        let objcopy = Self.findObjcopy(nextTo: clang)
        for object in objects {
            let output = work.appending(path: "BPF_\(object.name).swift")
            var arguments = [clang.path, object.source.path, output.path, object.identifier]
            if let objcopy { arguments += ["--objcopy", objcopy.path] }
            arguments += object.flags
            commands.append(.buildCommand(
                displayName: "Compiling BPF object \(object.name) from \(([object.source.lastPathComponent] + object.flags).joined(separator: " "))",
                executable: embed,
                arguments: arguments,
                inputFiles: [object.source] + headers,
                outputFiles: [output]))
        }
        return commands
    }

    /// `// sluice-bpf-variant: NAME -DFOO [-DBAR=1 -UBAZ ...]` lines in a source file.
    static func variants(in text: String, file: String) throws -> [(name: String, flags: [String])] {
        let marker = "sluice-bpf-variant:"
        var result: [(name: String, flags: [String])] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            guard trimmed.hasPrefix("//") else { continue }
            let comment = trimmed.dropFirst(2).drop { $0 == " " || $0 == "\t" }
            guard comment.hasPrefix(marker) else { continue }
            let words = comment.dropFirst(marker.count).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
                .map(String.init)
            guard let name = words.first, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }),
                  words.dropFirst().allSatisfy({ ($0.hasPrefix("-D") || $0.hasPrefix("-U")) && $0.count > 2 })
            else {
                throw PluginError("bpf/\(file): malformed line '\(trimmed)': expected '// sluice-bpf-variant: NAME -DDEFINE ...' "
                    + "(a name of letters, digits, '_' or '-', then only -D/-U flags)")
            }
            result.append((name, Array(words.dropFirst())))
        }
        return result
    }

    /// The clang that compiles the programs; see the file comment for the order.
    static func findClang() throws -> URL {
        let environment = ProcessInfo.processInfo.environment
        if let forced = environment["SLUICE_BPF_CLANG"], !forced.isEmpty {
            guard FileManager.default.isExecutableFile(atPath: forced) else {
                throw PluginError("SLUICE_BPF_CLANG=\(forced) is not an executable file")
            }
            return URL(filePath: forced)
        }
        var directories = (environment["PATH"] ?? "").split(separator: ":").map(String.init)
        if !directories.contains("/usr/bin") { directories.append("/usr/bin") }
        var toolchainCandidates: [String] = []
        func firstUsable(_ name: String) -> String? {
            for directory in directories {
                let path = directory + "/" + name
                guard FileManager.default.isExecutableFile(atPath: path) else { continue }
                // A Swift toolchain's clang: only a fallback, and only if it can target bpf.
                if FileManager.default.isExecutableFile(atPath: directory + "/swiftc") {
                    toolchainCandidates.append(path)
                    continue
                }
                return path
            }
            return nil
        }
        for version in stride(from: 40, through: 10, by: -1) {
            if let path = firstUsable("clang-\(version)") { return URL(filePath: path) }
        }
        if let path = firstUsable("clang") { return URL(filePath: path) }
        for path in toolchainCandidates where supportsBPF(clang: path) { return URL(filePath: path) }
        throw PluginError(
            "no clang that can compile BPF programs was found (looked for clang-NN and clang on PATH and in /usr/bin); "
            + "install it with `apt-get install clang` (or set SLUICE_BPF_CLANG to a clang with the bpf target)")
    }

    /// Whether `clang -print-targets` lists bpf.
    static func supportsBPF(clang path: String) -> Bool {
        let process = Process()
        process.executableURL = URL(filePath: path)
        process.arguments = ["-print-targets"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return process.terminationStatus == 0
            && String(decoding: data, as: UTF8.self).split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces).hasPrefix("bpf ") }
    }

    /// llvm-objcopy from the same LLVM as `clang` (used as `--strip-debug`), or nil: no stripping.
    static func findObjcopy(nextTo clang: URL) -> URL? {
        let directory = clang.deletingLastPathComponent()
        let name = clang.lastPathComponent
        var candidates: [URL] = []
        if name.hasPrefix("clang-"), let version = Int(name.dropFirst("clang-".count)) {
            candidates.append(directory.appending(path: "llvm-objcopy-\(version)"))
        }
        // /usr/bin/clang -> /usr/lib/llvm-NN/bin/clang, whose directory has llvm-objcopy.
        candidates.append(clang.resolvingSymlinksInPath().deletingLastPathComponent().appending(path: "llvm-objcopy"))
        candidates.append(directory.appending(path: "llvm-objcopy"))
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }
}

struct BPFObject {
    var name: String
    var source: URL
    var flags: [String]

    /// lowerCamelCase of the name: xsk_redirect_frags -> xskRedirectFrags.
    var identifier: String {
        let words = name.split(whereSeparator: { !($0.isASCII && ($0.isLetter || $0.isNumber)) })
        var result = ""
        for (index, word) in words.enumerated() {
            result += index == 0 ? word.lowercased() : word.prefix(1).uppercased() + word.dropFirst()
        }
        if result.isEmpty || result.first!.isNumber { result = "_" + result }
        return result
    }
}

struct PluginError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = "SluiceBPFPlugin: " + description }
}
