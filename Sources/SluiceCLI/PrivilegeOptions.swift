import ArgumentParser
import Sluice
import SluiceCore
import SluiceSystem

/// `--user NAME`: set up as root (or with the capabilities setup needs), then serve as NAME.
struct PrivilegeOptions: ParsableArguments {
    @Option(help: "Once set up (sockets bound, XDP attached, devices made), run as this user, keeping only the capabilities the rest of the run needs (CAP_NET_ADMIN with --backend xdp, to detach at the end, and with a TUN or TAP device that was there before, to leave it as found; none otherwise).")
    var user: String?

    func validate() throws {
        guard let user else { return }
        guard let found = ProcessIdentity.user(named: user) else { throw ValidationError("--user: no user named or numbered '\(user)'") }
        if found.uid == 0 { throw ValidationError("--user: '\(user)' is root; name an unprivileged user, such as nobody") }
    }

    /// Becomes `--user`, if given, keeping `capabilities`; says so in one line through `say`.
    func dropAfterSetup(_ command: String, keeping capabilities: Set<Capability> = [],
                        say: (String) -> Void) throws {
        guard let name = user, let user = ProcessIdentity.user(named: name) else { return }
        do {
            try ProcessIdentity.become(user, keeping: capabilities)
        } catch {
            writeToStandardError("sluice \(command): \(error.terminalDescription)\n")
            throw ExitCode(1)
        }
        say("sluice \(command): running as \(user.name) (uid \(user.uid), gid \(user.gid)), capabilities: "
            + (capabilities.isEmpty ? "none" : Capability.list(capabilities.sorted())))
    }
}

/// `--user` for a server whose setup ends in a callback that cannot throw (`ready`): the
/// callback drops privileges, and a failed drop stops the server, which then exits with 1.
final class DropOnReady: Sendable {
    private let failed = StopFlag()
    private let options: PrivilegeOptions
    private let command: String

    init(_ options: PrivilegeOptions, command: String) {
        self.options = options
        self.command = command
    }

    /// Drops to `--user`; call from `ready`.
    func drop(say: (String) -> Void) {
        do { try options.dropAfterSetup(command, say: say) } catch { failed.set() }
    }

    /// `condition`, or true once a drop failed.
    func stopping(_ condition: @escaping () -> Bool) -> () -> Bool {
        { [failed] in failed.isSet || condition() }
    }

    /// Exits with 1 if the drop failed (it said why).
    func check() throws {
        if failed.isSet { throw ExitCode(1) }
    }
}
