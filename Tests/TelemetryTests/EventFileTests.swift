import Common
import Foundation
import Testing
@testable import Telemetry

@Suite struct EventFileTests {
    @Test func crc32cVectorAndMaskedHeader() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        // The usual first record (24 bytes): the header bytes TensorBoard's own writer produces.
        let header = Array(TFRecord.frame([UInt8](repeating: 0, count: 24)).prefix(12))
        #expect(header == [0x18, 0, 0, 0, 0, 0, 0, 0, 0xA3, 0x7F, 0x4B, 0x22])
    }

    @Test func firstRecordIsTheFileVersion() {
        let bytes = EventProto.fileVersion(wallTime: 1.5)
        #expect(bytes.count == 24)
        #expect(bytes.first == 0x09 && bytes[9] == 0x1A && bytes[10] == 13)
        #expect(String(decoding: bytes[11...], as: UTF8.self) == "brain.Event:2")
    }

    @Test func scalarsRoundTripThroughTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zt-tfevents-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var t = 1_700_000_000.25
        let writer = try EventFileWriter(directory: dir, suffix: "coordinator", clock: { t += 1; return t })
        try writer.scalars(step: 0, [("train/loss", 5.5), ("train/lr", 1e-3)])
        try writer.scalars(step: 300, [("train/loss", 4.25), ("system/rank1/memory_device_bytes", 3.2e9), ("train/grad_norm", .nan)])
        #expect(URL(fileURLWithPath: writer.path).lastPathComponent.hasPrefix("events.out.tfevents.1700000001."))
        let events = try EventFileWriter.read(path: writer.path)
        #expect(events.count == 3)
        #expect(events[0].fileVersion == "brain.Event:2" && events[0].wallTime == 1_700_000_001.25)
        #expect(events[1].step == 0 && events[1].scalars.map(\.tag) == ["train/loss", "train/lr"])
        #expect(events[1].scalars.map(\.value) == [5.5, Float(1e-3)])
        #expect(events[2].step == 300 && events[2].scalars[1].value == Float(3.2e9) && events[2].scalars[2].value.isNaN)
    }

    @Test func corruptionIsDetected() throws {
        var bytes = TFRecord.frame(EventProto.scalars(wallTime: 2, step: 7, [("a", 1)]))
        #expect(try TFRecord.records(bytes).count == 1)
        bytes[14] ^= 0x01
        #expect(throws: TFRecord.ReadError.dataChecksum(offset: 0)) { try TFRecord.records(bytes) }
        bytes[14] ^= 0x01
        bytes[3] = 1
        #expect(throws: TFRecord.ReadError.lengthChecksum(offset: 0)) { try TFRecord.records(bytes) }
        #expect(throws: TFRecord.ReadError.truncated(offset: 0)) { try TFRecord.records(Array(TFRecord.frame([1, 2, 3]).dropLast())) }
    }
}
