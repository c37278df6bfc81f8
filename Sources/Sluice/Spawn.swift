#if canImport(Glibc)
import Glibc
#endif

/// Starts `executable` with `arguments`: standard input from /dev/null, standard output and
/// error both into `output`, an empty signal mask and default signal handlers.
///
/// The clean signal state matters: a caller's threads may block signals (the runtime blocks
/// SIGINT/SIGTERM; test runners block more), and a child inheriting that mask never sees its own
/// timers or a SIGTERM (sockperf spins forever without SIGALRM).
///
/// - Returns: the child's process id, or the `posix_spawn` error number.
public func spawnProcess(_ executable: String, _ arguments: [String], output: Int32) -> Result<pid_t, RuntimeError> {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, output, 1)
    posix_spawn_file_actions_adddup2(&actions, output, 2)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var empty = sigset_t()
    sigemptyset(&empty)
    var all = sigset_t()
    sigfillset(&all)
    posix_spawnattr_setsigmask(&attributes, &empty)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var child: pid_t = 0
    let result = posix_spawn(&child, executable, &actions, &attributes, argv, environ)
    guard result == 0 else {
        return .failure(RuntimeError("posix_spawn \(executable): \(String(cString: strerror(result)))"))
    }
    return .success(child)
}
