import Foundation
import Testing
import ZeroTrainTestKit

/// A checkpoint directory that fills up, on a real file system: a tmpfs mounted with room for one
/// checkpoint and a half (root only; skipped with a note where `mount` is not permitted).
@Suite(.serialized) struct DiskFullTests {
    /// The config of LocalClusterTests with a checkpoint every 4 steps into `dir`.
    static func text(_ dir: URL) -> String {
        LocalClusterTests.config(accumulation: 1, steps: 16).replacingOccurrences(
            of: "log_interval: 5}", with: "log_interval: 5, checkpoint_interval: 4, checkpoint_keep: 3, checkpoint_dir: \(dir.path)}")
    }

    static func bytes(under folder: URL) -> Int {
        let fm = FileManager.default
        return ((try? fm.subpathsOfDirectory(atPath: folder.path)) ?? []).reduce(0) { sum, p in
            sum + (((try? fm.attributesOfItem(atPath: folder.appendingPathComponent(p).path))?[.size] as? Int) ?? 0)
        }
    }

    /// Step 4's checkpoint fits; step 8's does not (a warning, and training goes on); step 12's
    /// does not either, and the second lost checkpoint in a row stops the job with exit 1 and one
    /// line naming the disk's error and the last checkpoint. Resuming from that checkpoint then
    /// gives the uninterrupted run's losses exactly: nothing but the steps after it was lost.
    @Test func aFullDiskWarnsThenStopsAndTheLastCheckpointResumesExactly() throws {
        let root = CLI.tempDir()
        defer { try? FileManager.default.removeItem(at: root) }
        func local(_ name: String, checkpoints: URL, resume: URL? = nil) throws -> (CLI.Result, URL) {
            let file = root.appendingPathComponent("\(name).yaml")
            try CLI.write(Self.text(checkpoints), to: file)
            let run = root.appendingPathComponent(name)
            var args = ["local", "--config", file.path, "--workers", "2", "--run-dir", run.path]
            if let resume { args += ["--resume", resume.path] }
            return (try CLI.run(args), run)
        }
        let (ref, refRun) = try local("reference", checkpoints: root.appendingPathComponent("reference-ck"))
        #expect(ref.status == 0, "\(ref.stderr)")
        let reference = try LocalClusterTests.losses(refRun)
        // Every checkpoint of this job has the same size (the last 3 are kept).
        let one = Self.bytes(under: root.appendingPathComponent("reference-ck/step-00000016"))
        #expect(one > 0)

        let full = root.appendingPathComponent("disk")
        try FileManager.default.createDirectory(at: full, withIntermediateDirectories: true)
        let size = (one + one / 2 + 4095) / 4096 * 4096
        let mounted = try CLI.runTool("/bin/sh", ["-c", "mount -t tmpfs -o size=\(size) tmpfs \(full.path) 2>&1 && echo mounted || true"])
        guard mounted.contains("mounted") else {
            print("note: DiskFullTests skipped: cannot mount a tmpfs here (\(mounted.trimmingCharacters(in: .whitespacesAndNewlines)))")
            return
        }
        defer { _ = try? CLI.runTool("/bin/umount", [full.path]) }

        let (stopped, run) = try local("full", checkpoints: full)
        // `local` prints the coordinator's log, and the job's end, on stdout.
        #expect(stopped.status == 1, "\(stopped.stdout)\(stopped.stderr)")
        let line = stopped.stdout.split(separator: "\n").last.map(String.init) ?? ""
        #expect(line.contains("cannot save the checkpoint of step 12") && line.contains("No space left on device")
                && line.contains("second checkpoint in a row") && line.contains("step-00000004"), "\(stopped.stdout)")
        let log = stopped.stdout
        #expect(log.contains("warning: cannot save the checkpoint of step 8") && log.contains("training goes on"), "\(log)")
        #expect(!log.contains("recovery"), "a full disk is not a failure to recover from: \(log)")
        // Training went on after the first lost checkpoint: steps 0 … 11 ran, with the reference's losses.
        let losses = try LocalClusterTests.losses(run)
        #expect(losses == Array(reference.prefix(12)))
        let latest = try String(contentsOf: full.appendingPathComponent("latest"), encoding: .utf8)
        #expect(latest.trimmingCharacters(in: .whitespacesAndNewlines) == "step-00000004")
        let verify = try CLI.run(["checkpoint", "verify", full.appendingPathComponent("step-00000004").path])
        #expect(verify.status == 0, "\(verify.stderr)")

        // Space freed (here: the checkpoint copied elsewhere), the job resumes from step 4 exactly.
        let saved = root.appendingPathComponent("saved/step-00000004")
        try FileManager.default.createDirectory(at: saved.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: full.appendingPathComponent("step-00000004"), to: saved)
        let (resumed, resumedRun) = try local("resumed", checkpoints: root.appendingPathComponent("resumed-ck"), resume: saved)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try LocalClusterTests.losses(resumedRun) == Array(reference[4...]))
        #expect(LocalClusterTests.leftovers(root).isEmpty)
    }
}
