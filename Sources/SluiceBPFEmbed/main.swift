// SluiceBPFEmbed: the host tool behind SluiceBPFPlugin.
//
//   SluiceBPFEmbed CLANG SOURCE.bpf.c OUTPUT.swift IDENTIFIER [--objcopy LLVM-OBJCOPY] [-DNAME[=V] | -UNAME ...]
//       compiles SOURCE with `CLANG -O2 -g -target bpf -I/usr/include/$(uname -m)-linux-gnu FLAGS`,
//       strips DWARF with `LLVM-OBJCOPY --strip-debug` (keeping .BTF/.BTF.ext, which libbpf needs
//       for the `SEC(".maps")` maps; the unstripped object is used if they went missing), and
//       writes OUTPUT.swift: `extension EmbeddedBPFObjects { package static let IDENTIFIER: [UInt8] }`
//       with the bytes as base64 in a StaticString, decoded once on first use. The object is
//       kept next to OUTPUT (OUTPUT without .swift, plus .o) for inspection.
//   SluiceBPFEmbed --index OUTPUT.swift [IDENTIFIER=NAME ...]
//       writes the enum EmbeddedBPFObjects, its decoder, and `all` (name and bytes of each object).
//
// Paths in the BTF line info are made relative to the package root (SOURCE's grandparent), so the
// bytes do not depend on where the package is checked out. Files are rewritten only when their
// contents change. No Foundation: this runs on every build that touches a .bpf.c.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

func writeToStandardError(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        if written <= 0 { return }
        bytes = bytes.dropFirst(written)
    }
}

func fail(_ message: String) -> Never {
    writeToStandardError("error: SluiceBPFEmbed: \(message)\n")
    exit(1)
}

func warn(_ message: String) {
    writeToStandardError("warning: SluiceBPFEmbed: \(message)\n")
}

func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            return nil
        }
        if count == 0 { return bytes }
        bytes += chunk[0..<count]
    }
}

/// Writes `text` to `path` through a temporary file and rename, unless it already holds exactly that.
func writeIfChanged(_ text: String, to path: String) {
    let bytes = Array(text.utf8)
    if readFile(path) == bytes { return }
    let temporary = path + ".tmp.\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { fail("cannot create \(temporary): \(String(cString: strerror(errno)))") }
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        if written < 0 {
            if errno == EINTR { continue }
            let reason = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            fail("cannot write \(temporary): \(reason)")
        }
        offset += written
    }
    close(fd)
    guard rename(temporary, path) == 0 else { fail("cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))") }
}

/// Runs `arguments` (argv[0] is an absolute path), stdout and stderr inherited; the exit status or -1.
func run(_ arguments: [String]) -> Int32 {
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    let spawned = posix_spawn(&pid, arguments[0], nil, nil, argv, environ)
    guard spawned == 0 else {
        if spawned == ENOENT || spawned == EACCES {
            fail("cannot run \(arguments[0]) (\(String(cString: strerror(spawned)))); install clang with `apt-get install clang`")
        }
        fail("cannot run \(arguments[0]): \(String(cString: strerror(spawned)))")
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
        guard errno == EINTR else { return -1 }
    }
    // WIFEXITED / WEXITSTATUS
    return status & 0x7f == 0 ? (status >> 8) & 0xff : -1
}

func directoryName(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

func machine() -> String {
    var names = utsname()
    uname(&names)
    return withUnsafeBytes(of: &names.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}

func contains(_ bytes: [UInt8], _ needle: String) -> Bool {
    let pattern = Array(needle.utf8)
    guard bytes.count >= pattern.count else { return false }
    for start in 0...(bytes.count - pattern.count) where bytes[start] == pattern[0] {
        if bytes[start..<start + pattern.count].elementsEqual(pattern) { return true }
    }
    return false
}

let base64Alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

/// Base64 of `bytes` in lines of 100 characters (a multi-line string literal's body).
func base64Lines(_ bytes: [UInt8]) -> String {
    var characters: [UInt8] = []
    characters.reserveCapacity((bytes.count + 2) / 3 * 4)
    var index = 0
    while index < bytes.count {
        let b0 = UInt32(bytes[index])
        let b1 = index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0
        let b2 = index + 2 < bytes.count ? UInt32(bytes[index + 2]) : 0
        let triple = b0 << 16 | b1 << 8 | b2
        characters.append(base64Alphabet[Int(triple >> 18 & 63)])
        characters.append(base64Alphabet[Int(triple >> 12 & 63)])
        characters.append(index + 1 < bytes.count ? base64Alphabet[Int(triple >> 6 & 63)] : UInt8(ascii: "="))
        characters.append(index + 2 < bytes.count ? base64Alphabet[Int(triple & 63)] : UInt8(ascii: "="))
        index += 3
    }
    var lines: [String] = []
    var start = 0
    while start < characters.count {
        let end = min(start + 100, characters.count)
        lines.append(String(decoding: characters[start..<end], as: UTF8.self))
        start = end
    }
    return lines.joined(separator: "\n")
}

let header = "// Generated by SluiceBPFEmbed (SluiceBPFPlugin). Do not edit.\n"

func writeIndex(output: String, entries: [String]) {
    let pairs: [(identifier: String, name: String)] = entries.map { entry in
        guard let equals = entry.firstIndex(of: "=") else { fail("expected IDENTIFIER=NAME, got '\(entry)'") }
        return (String(entry[..<equals]), String(entry[entry.index(after: equals)...]))
    }
    var text = header + """

        /// The XDP programs in the package's bpf/ folder, compiled by SluiceBPFPlugin: one ELF
        /// object per bpf/NAME.bpf.c, and per `// sluice-bpf-variant:` line, for libbpf's
        /// `bpf_object__open_mem`.
        package enum EmbeddedBPFObjects {
            /// Every object, by file name without `.bpf.o` (e.g. "xsk_redirect_frags"), sorted.
            package static var all: [(name: String, bytes: [UInt8])] {
                [

        """
    for pair in pairs.sorted(by: { $0.name < $1.name }) {
        text += "            (\"\(pair.name)\", `\(pair.identifier)`),\n"
    }
    text += """
                ]
            }

            /// Decodes the base64 in `text` (newlines and padding skipped) into `count` bytes.
            static func decode(_ text: StaticString, count: Int) -> [UInt8] {
                text.withUTF8Buffer { source in
                    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
                        var accumulator: UInt32 = 0
                        var bits = 0
                        var written = 0
                        for character in source {
                            let value: UInt32
                            switch character {
                            case 65...90: value = UInt32(character) - 65    // A-Z
                            case 97...122: value = UInt32(character) - 71   // a-z
                            case 48...57: value = UInt32(character) + 4     // 0-9
                            case 43: value = 62                             // +
                            case 47: value = 63                             // /
                            default: continue                               // = and newlines
                            }
                            accumulator = accumulator << 6 | value
                            bits += 6
                            if bits >= 8 {
                                bits -= 8
                                precondition(written < count, "EmbeddedBPFObjects: more bytes than declared")
                                buffer[written] = UInt8(truncatingIfNeeded: accumulator >> UInt32(bits))
                                written += 1
                            }
                        }
                        precondition(written == count, "EmbeddedBPFObjects: fewer bytes than declared")
                        initialized = written
                    }
                }
            }
        }

        """
    writeIfChanged(text, to: output)
}

func embedObject(arguments: [String]) {
    guard arguments.count >= 4 else {
        fail("usage: SluiceBPFEmbed CLANG SOURCE.bpf.c OUTPUT.swift IDENTIFIER [--objcopy PATH] [-DNAME ...]")
    }
    let (clang, source, output, identifier) = (arguments[0], arguments[1], arguments[2], arguments[3])
    var objcopy: String?
    var flags: [String] = []
    var rest = arguments.dropFirst(4).makeIterator()
    while let argument = rest.next() {
        if argument == "--objcopy" {
            guard let path = rest.next() else { fail("--objcopy needs a path") }
            objcopy = path
        } else if argument.hasPrefix("-D") || argument.hasPrefix("-U") {
            flags.append(argument)
        } else {
            fail("unexpected argument '\(argument)' (only -D/-U flags may follow the identifier)")
        }
    }
    guard access(clang, X_OK) == 0 else {
        fail("clang not found at \(clang); install it with `apt-get install clang`")
    }
    let packageRoot = directoryName(directoryName(source))
    // clang reads the source lines it puts in .BTF.ext through the remapped "./bpf/X.bpf.c",
    // i.e. relative to the working directory: run it from the package root.
    guard chdir(packageRoot) == 0 else { fail("cannot enter \(packageRoot): \(String(cString: strerror(errno)))") }
    let object = (output.hasSuffix(".swift") ? String(output.dropLast(6)) : output) + ".o"
    let unstripped = object + ".full"
    unlink(unstripped)
    let compile = [clang, "-O2", "-g", "-target", "bpf",
                   "-I/usr/include/\(machine())-linux-gnu",
                   "-fdebug-prefix-map=\(packageRoot)/=", "-fdebug-compilation-dir=."]
        + flags + ["-c", source, "-o", unstripped]
    guard run(compile) == 0, var bytes = readFile(unstripped) else {
        fail("compiling \(source) failed: \(compile.joined(separator: " "))")
    }
    var stripped = false
    if let objcopy {
        unlink(object)
        if run([objcopy, "--strip-debug", unstripped, object]) == 0, let small = readFile(object) {
            if contains(bytes, ".BTF") && !contains(small, ".BTF") {
                warn("\(objcopy) --strip-debug dropped .BTF from \(source); embedding the unstripped object")
            } else {
                bytes = small
                stripped = true
            }
        } else {
            warn("\(objcopy) --strip-debug failed on \(source); embedding the unstripped object")
        }
    }
    if !stripped {
        unlink(object)
        _ = rename(unstripped, object)
    } else {
        unlink(unstripped)
    }
    // An ELF64 little-endian relocatable object for EM_BPF (247).
    guard bytes.count > 64, bytes[0..<4].elementsEqual([0x7f, 0x45, 0x4c, 0x46]), bytes[4] == 2,
          bytes[16] == 1, bytes[18] == 247 else {
        fail("\(object) is not a BPF ELF object")
    }
    var relative = source
    if source.hasPrefix(packageRoot + "/") { relative = String(source.dropFirst(packageRoot.count + 1)) }
    let description = (["clang -O2 -g -target bpf"] + flags).joined(separator: " ")
        + (stripped ? ", DWARF stripped (BTF kept)" : "")
    let text = header + """

        extension EmbeddedBPFObjects {
            /// \(relative): \(description); \(bytes.count) bytes.
            package static let `\(identifier)`: [UInt8] = decode(\(identifier)Base64, count: \(bytes.count))
        }

        private let \(identifier)Base64: StaticString = \"""
        \(base64Lines(bytes))
        \"""

        """
    writeIfChanged(text, to: output)
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--index" {
    guard arguments.count >= 2 else { fail("usage: SluiceBPFEmbed --index OUTPUT.swift [IDENTIFIER=NAME ...]") }
    writeIndex(output: arguments[1], entries: Array(arguments.dropFirst(2)))
} else {
    embedObject(arguments: arguments)
}
