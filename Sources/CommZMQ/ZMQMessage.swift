import CZeroMQ

/// An owned `zmq_msg_t` at a stable heap address (libzmq messages must not be copied bitwise
/// while in use). Not thread-safe; reused across sends and receives by its owner.
public final class ZMQMessage {
    let pointer: UnsafeMutablePointer<zmq_msg_t>

    /// An empty message (ready for `receive`).
    public init() {
        pointer = .allocate(capacity: 1)
        zmq_msg_init(pointer)
    }

    deinit {
        zmq_msg_close(pointer)
        pointer.deallocate()
    }

    /// Replaces the content by `byteCount` fresh bytes owned by libzmq.
    public func reset(byteCount: Int) throws {
        zmq_msg_close(pointer)
        if zmq_msg_init_size(pointer, byteCount) != 0 {
            zmq_msg_init(pointer)
            throw ZMQError.last("zmq_msg_init_size", "\(byteCount) bytes")
        }
    }

    /// Replaces the content by borrowed bytes (zero-copy): libzmq reads `bytes` until it calls
    /// `release`, from any thread; `release` runs exactly once, also if the message is closed unsent.
    public func reset(borrowing bytes: UnsafeRawBufferPointer, release: @escaping @Sendable () -> Void) throws {
        zmq_msg_close(pointer)
        let box = Unmanaged.passRetained(ReleaseBox(release)).toOpaque()
        let data = UnsafeMutableRawPointer(mutating: bytes.baseAddress ?? UnsafeRawPointer(box))
        let rc = zmq_msg_init_data(pointer, data, bytes.count, { _, hint in
            guard let hint else { return }
            Unmanaged<ReleaseBox>.fromOpaque(hint).takeRetainedValue().release()
        }, box)
        if rc != 0 {
            let error = ZMQError.last("zmq_msg_init_data", "\(bytes.count) bytes")
            zmq_msg_init(pointer)
            Unmanaged<ReleaseBox>.fromOpaque(box).takeRetainedValue().release()
            throw error
        }
    }

    /// Drops the content (runs a pending release callback when this was the last reference).
    public func clear() {
        zmq_msg_close(pointer)
        zmq_msg_init(pointer)
    }

    public var count: Int { zmq_msg_size(pointer) }

    /// A metadata property of a received message ("User-Id": what the ZAP handler named the
    /// connection's peer, its CURVE key; "Peer-Address"), or nil.
    public func property(_ name: String) -> String? {
        guard let value = zmq_msg_gets(pointer, name) else { return nil }
        return String(cString: value)
    }

    /// The message bytes; valid until the next reset, clear, send or receive.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: zmq_msg_data(pointer), count: zmq_msg_size(pointer))
    }

    public var mutableBytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: zmq_msg_data(pointer), count: zmq_msg_size(pointer))
    }
}

private final class ReleaseBox: Sendable {
    let release: @Sendable () -> Void
    init(_ release: @escaping @Sendable () -> Void) { self.release = release }
}
