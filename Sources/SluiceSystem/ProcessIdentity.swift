#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import SluiceCore

/// Who the process runs as, and how it stops being root once its setup is done: the sockets
/// bound, the XDP program attached, the devices made.
public enum ProcessIdentity {
    /// A user to run as.
    public struct User: Sendable, Equatable {
        /// The name.
        public var name: String
        /// The user ID.
        public var uid: uid_t
        /// The primary group ID.
        public var gid: gid_t
    }

    /// The user called `name` (getpwnam), or whose number `name` is (getpwuid, as `setpriv` and
    /// systemd take one); `nil` if there is none.
    public static func user(named name: String) -> User? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        if getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil {
            return User(name: name, uid: entry.pw_uid, gid: entry.pw_gid)
        }
        guard let id = uid_t(name), getpwuid_r(id, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return User(name: String(cString: entry.pw_name), uid: entry.pw_uid, gid: entry.pw_gid)
    }

    /// The ID of the group called `name` (getgrnam), or `nil` if there is none.
    public static func groupID(named name: String) -> gid_t? {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.gr_gid
    }

    /// Becomes `user` in every thread (its groups, then its group, then its user), keeping only
    /// `capabilities`, permitted and effective, in every thread; nothing else survives (no
    /// inheritable or ambient capabilities). A process that is that user already (real,
    /// effective and saved IDs) keeps its groups and only drops capabilities.
    ///
    /// Call it once all threads that need more exist and are done with it: capabilities belong
    /// to threads, and every thread of the process is changed.
    public static func become(_ user: User, keeping capabilities: Set<Capability>) throws(SystemCallError) {
        guard user.uid != 0 else {
            throw SystemCallError(.credentials, operation: "changing to user \(user.name)", errno: EINVAL,
                                  hint: "that user is root; name an unprivileged one, such as nobody")
        }
        let keep = !capabilities.isEmpty
        // Already that user, saved IDs included (started so by setpriv or systemd): there is no ID
        // to change, only capabilities to drop, and initgroups would want CAP_SETGID for nothing;
        // the groups stay those it was started with.
        let already = sluice_ids_are(user.uid, user.gid) == 1
        let wasRoot = geteuid() == 0
        if keep && !already {
            let result = sluice_keep_capabilities(1)
            guard result == 0 else {
                throw SystemCallError(.credentials, operation: "prctl(PR_SET_KEEPCAPS) in every thread", errno: -result,
                                      hint: -result == ETIMEDOUT ? "a thread blocks SIGRTMAX-1 and did not answer" : nil)
            }
        }
        if !already {
            // glibc applies set*id to every thread of the process; as root, setuid sets the real, effective and saved IDs.
            guard initgroups(user.name, user.gid) == 0 else {
                throw SystemCallError(.credentials, operation: "initgroups(\(user.name))", errno: errno)
            }
            guard setgid(user.gid) == 0 else {
                throw SystemCallError(.credentials, operation: "setgid(\(user.gid))", errno: errno)
            }
            guard setuid(user.uid) == 0 else {
                throw SystemCallError(.credentials, operation: "setuid(\(user.uid))", errno: errno)
            }
        }
        // Leaving uid 0 cleared the permitted, effective and ambient sets; a change between other
        // users clears nothing, and none clears the inheritable set: those are set here, in every
        // thread (the signal each thread answers is asked only when there is something to drop).
        if keep && !already { _ = sluice_keep_capabilities(0) }
        guard keep || !wasRoot || already || !(Capability.set("CapInh")?.isEmpty ?? false) else { return }
        let mask = capabilities.reduce(UInt64(0)) { $0 | (1 << UInt64($1.rawValue)) }
        let result = sluice_set_process_capabilities(mask, mask)
        guard result == 0 else {
            let what = keep ? "keeping \(Capability.list(capabilities.sorted()))" : "dropping every capability"
            throw SystemCallError(.credentials, operation: "\(what) in every thread",
                                  errno: -result, hint: -result == ETIMEDOUT ? "a thread blocks SIGRTMAX-1 and did not answer"
                                      : "a thread did not keep its permitted capabilities through the change of user")
        }
    }
}
