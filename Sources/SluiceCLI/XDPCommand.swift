import ArgumentParser
import SluiceCore
import SluiceSystem
import SluiceXDP
#if canImport(Glibc)
import Glibc
#endif

extension XDPAttachMode: ExpressibleByArgument {}

/// `sluice xdp load|status|unload`: the XDP program that steers UDP ports into AF_XDP sockets.
struct XDPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xdp",
        abstract: "Load, inspect and unload sluice's XDP program (steers chosen UDP ports to AF_XDP sockets).",
        subcommands: [XDPLoad.self, XDPStatus.self, XDPUnload.self]
    )
}

/// Options every `xdp` subcommand takes.
struct XDPInterfaceOptions: ParsableArguments {
    @Option(help: "The interface, e.g. veth1.")
    var dev: String

    @Option(help: "Enter this network namespace (/run/netns/NAME) first, in-process (keeps /sys/fs/bpf visible).")
    var netns: String?

    /// Enters the namespace, if one was given. Must run before anything touches the network.
    func enterNamespace() throws {
        if let netns { try reporting { () throws(SystemCallError) in try NetworkNamespace.enter(netns) } }
    }
}

/// Runs `body`, turning an `SystemCallError` into one "sluice: error: ..." line on stderr and exit code 1.
func reporting<T>(_ body: () throws(SystemCallError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        writeToStandardError("sluice: error: \(error.terminalDescription)\n")
        throw ExitCode(1)
    }
}

/// Formats a port list for people: "53, 9000" or "none".
func describePorts(_ ports: [UInt16]) -> String {
    ports.isEmpty ? "none" : ports.map(String.init).joined(separator: ", ")
}

struct XDPLoad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Attach sluice's XDP program to an interface and steer the given UDP ports (the program stays after exit).")

    @OptionGroup var target: XDPInterfaceOptions

    @Option(help: "XDP mode: native (falls back to generic when the driver refuses) or generic.")
    var mode: XDPAttachMode = .native

    @Option(help: "UDP destination ports to steer to AF_XDP sockets, e.g. 53,9000 or 9000-9003; replaces the current set.")
    var ports: String = ""

    @Flag(help: "Replace another (non-sluice) XDP program attached to the interface.")
    var force = false

    @Flag(help: "Load the multi-buffer (xdp.frags) build, for MTUs above one page.")
    var frags = false

    func validate() throws { let _: [UInt16] = try parseNumberList(ports, of: "port", in: 1...65535, limit: 65535) }

    func run() throws {
        try target.enterNamespace()
        let wanted: [UInt16] = try parseNumberList(ports, of: "port", in: 1...65535, limit: 65535)
        let program = try reporting { () throws(SystemCallError) in
            try XDPProgram.attach(to: target.dev, mode: mode, force: force, frags: frags, logger: .terminal)
        }
        let current = try reporting { () throws(SystemCallError) in try program.ports }
        try reporting { () throws(SystemCallError) in
            for port in current where !wanted.contains(port) { try program.setPort(port, enabled: false) }
            for port in wanted where !current.contains(port) { try program.setPort(port) }
        }
        if let note = program.attachNote { print("sluice xdp: \(note)") }
        let modeText = program.mode == .native ? "native" : "generic (skb)"
        if program.wasAlreadyAttached {
            print("sluice xdp: program \(program.programID) already attached to \(target.dev) in \(modeText) mode; "
                  + "steered UDP ports now: \(describePorts(wanted))")
        } else {
            print("sluice xdp: program \(program.programID) attached to \(target.dev) in \(modeText) mode; "
                  + "steering UDP ports: \(describePorts(wanted))")
        }
    }
}

struct XDPStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the XDP program on an interface: id, mode, steered ports, verdict counters.")

    @OptionGroup var target: XDPInterfaceOptions

    func run() throws {
        try target.enterNamespace()
        guard let program = try reporting({ () throws(SystemCallError) in try XDPProgram.attached(on: target.dev) }) else {
            if let other = try reporting({ () throws(SystemCallError) in try XDPProgram.foreignProgram(on: target.dev) }) {
                print("\(target.dev): no sluice XDP program attached; another program is: '\(other.name)' (id \(other.programID), "
                      + "\(other.mode?.rawValue ?? "offload") mode)")
            } else {
                print("\(target.dev): no XDP program attached")
            }
            return
        }
        let ports = try reporting { () throws(SystemCallError) in try program.ports }
        let verdicts = try reporting { () throws(SystemCallError) in try program.verdicts() }
        print("\(target.dev): sluice XDP program id \(program.programID), mode \(program.mode.rawValue)")
        print("  ports: \(describePorts(ports))")
        let listeners = try reporting { () throws(SystemCallError) in try program.listeners }
        print("  listeners: \(listeners.isEmpty ? "none" : listeners.map(\.description).joined(separator: ", "))")
        print("  verdicts: redirected \(verdicts.redirected), pass_not_udp \(verdicts.passedNotUDP), "
              + "pass_port \(verdicts.passedPort), pass_no_socket \(verdicts.passedNoSocket), "
              + "pass_fragment \(verdicts.passedFragment), pass_malformed \(verdicts.passedMalformed)")
    }
}

struct XDPUnload: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unload", abstract: "Detach sluice's XDP program from an interface (other programs are left alone).")

    @OptionGroup var target: XDPInterfaceOptions

    func run() throws {
        try target.enterNamespace()
        let existing = try reporting { () throws(SystemCallError) in try XDPProgram.attached(on: target.dev) }
        guard let existing else {
            if let other = try reporting({ () throws(SystemCallError) in try XDPProgram.foreignProgram(on: target.dev) }) {
                print("\(target.dev): no sluice XDP program attached, nothing to unload (another program, '\(other.name)' "
                      + "id \(other.programID), is left alone; `ip link set dev \(target.dev) xdp off` removes it)")
            } else {
                print("\(target.dev): no sluice XDP program attached, nothing to unload")
            }
            return
        }
        try reporting { () throws(SystemCallError) in try existing.detach() }
        print("sluice xdp: detached program \(existing.programID) (\(existing.mode.rawValue) mode) from \(target.dev)")
    }
}
