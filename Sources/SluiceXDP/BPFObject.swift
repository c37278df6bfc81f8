#if canImport(Glibc)
import Glibc
#endif
import CSluiceXDP
import SluiceCore
import SluiceSystem

/// An XDP program opened (not yet loaded) from one of the BPF objects built into the package,
/// with the libbpf object behind it.
///
/// The package's build compiles `bpf/*.bpf.c` (SluiceBPFPlugin) and embeds the objects, so a
/// package that depends on Sluice has its programs without running make. For development,
/// `SLUICE_BPF_DIR` names a directory whose `NAME.bpf.o` files are used instead; nothing is ever
/// read from the current directory.
package struct BPFObject: @unchecked Sendable {
    /// libxdp's program.
    package let program: OpaquePointer
    /// libbpf's object: libxdp does not close an object it was handed, so it is closed here,
    /// after the program.
    package let object: OpaquePointer?

    /// The names of the objects the package embeds ("xsk_redirect", "udp_drop", …).
    package static var embeddedNames: [String] { EmbeddedBPFObjects.all.map(\.name) }

    /// Opens program `programName` of object `name` ("xsk_redirect", without `.bpf.o`).
    package static func open(named name: String, programName: String) throws(SystemCallError) -> BPFObject {
        if let directory = getenv("SLUICE_BPF_DIR").map({ String(cString: $0) }), directory.hasPrefix("/") {
            return try openFile("\(directory)/\(name).bpf.o", programName: programName)
        }
        guard let bytes = EmbeddedBPFObjects.all.first(where: { $0.name == name })?.bytes else {
            throw SystemCallError(.xdp, operation: "finding the BPF object \(name)", errno: ENOENT,
                                  hint: "the package embeds only \(embeddedNames.joined(separator: ", "))")
        }
        var options = bpf_object_open_opts()
        options.sz = MemoryLayout<bpf_object_open_opts>.size
        // libbpf copies the object's bytes and name during the open.
        let object = name.withCString { objectName in
            options.object_name = objectName
            return bytes.withUnsafeBytes { bpf_object__open_mem($0.baseAddress, $0.count, &options) }
        }
        guard let object, libbpf_get_error(UnsafeRawPointer(object)) == 0 else {
            throw SystemCallError(.xdp, operation: "opening the embedded BPF object \(name)", errno: Glibc.errno)
        }
        let created = createProgram(programName) { $0.obj = object }
        guard let program = created.program else {
            bpf_object__close(object)
            throw SystemCallError(.xdp, operation: "finding program \(programName) in the embedded object \(name)",
                                  errno: created.errno)
        }
        return BPFObject(program: program, object: object)
    }

    /// Opens program `programName` from an object file (the development override).
    private static func openFile(_ path: String, programName: String) throws(SystemCallError) -> BPFObject {
        let created = path.withCString { file in createProgram(programName) { $0.open_filename = file } }
        guard let program = created.program else {
            throw SystemCallError(.xdp, operation: "opening XDP program \(programName) in \(path) (SLUICE_BPF_DIR)",
                                  errno: created.errno, hint: "SLUICE_BPF_DIR overrides the embedded objects; unset it to use them")
        }
        return BPFObject(program: program, object: nil)
    }

    /// libxdp's program `programName` from the object or file that `source` sets in the
    /// options, or the errno of the failure.
    private static func createProgram(_ programName: String, _ source: (inout xdp_program_opts) -> Void)
        -> (program: OpaquePointer?, errno: Int32) {
        programName.withCString { name in
            var options = xdp_program_opts()
            options.sz = optionsSize(\xdp_program_opts.fd, Int32.self)
            options.prog_name = name
            source(&options)
            let program = xdp_program__create(&options)
            let error = libxdp_get_error(UnsafeRawPointer(program))
            guard let program, error == 0 else { return (nil, error != 0 ? Int32(truncatingIfNeeded: error) : Glibc.errno) }
            return (program, 0)
        }
    }

    /// Closes the program, then the object.
    package func close() {
        xdp_program__close(program)
        if let object { bpf_object__close(object) }
    }
}
