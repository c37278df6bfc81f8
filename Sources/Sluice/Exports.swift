// One import gives a service author the whole framework.
@_exported import SluiceCore
@_exported import SluicePackets
@_exported import SluiceSystem
@_exported import SluiceUDP
@_exported import SluiceSockets
@_exported import SluiceXDP
@_exported import SluiceURing
@_exported import SluiceTUN
@_exported import SluiceHost
@_exported import SluiceDNS
@_exported import SluiceTLS
