// TCP echo over the async stream API of the io_uring engine:
//
//   swift run tcp-echo 127.0.0.1:7000 [SECONDS]
//
// Every byte a client sends comes back; after the client's FIN the connection finishes sending
// and closes. It stops after SECONDS (default 30).
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Sluice

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count <= 2, let endpoint = IPEndpoint(arguments.first ?? "127.0.0.1:7000"),
      let seconds = arguments.count > 1 ? Int(arguments[1]) : 30, seconds > 0 else {
    Logger(label: "tcp-echo").error("usage: tcp-echo [ADDRESS:PORT [SECONDS]]")
    exit(2)
}

// README: begin tcp
do {
    let loop = try TCPEventLoop()                       // the engine on a thread of its own
    let listener = try await loop.listen(on: endpoint)
    print("echoing on \(listener.localEndpoint)")
    let server = Task {
        await withDiscardingTaskGroup { group in
            for await connection in listener.connections {
                group.addTask {
                    do {
                        for try await chunk in connection.inbound { try await connection.send(chunk) }
                    } catch {
                        print("\(connection): \(error)")
                    }
                    connection.close()                  // the peer shut its write side: finish and close
                }
            }
        }
    }
    try await Task.sleep(for: .seconds(seconds))
    let report = loop.shutdown()                        // the listener and every inbound stream end
    await server.value
    print(report)
} catch {
    Logger(label: "tcp-echo").error("\(error)")          // what failed, the errno, and what to do about it
    exit(1)
}
// README: end
