//! RFC 6455 WebSocket protocol, sans-IO (being written).
