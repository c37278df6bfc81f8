import ServiceLifecycle

/// A ``UDPServer`` is a swift-service-lifecycle `Service`: in a `ServiceGroup` its ``UDPServer/run()``
/// ends (and its workers stop) on graceful shutdown or cancellation. Set
/// ``UDPServerConfiguration/handlesSignals`` to false there: the group owns SIGINT and SIGTERM.
extension UDPServer: ServiceLifecycle.Service {
    static func shutdownRequested() -> Bool { Task.isShuttingDownGracefully }
}
