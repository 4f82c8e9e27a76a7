import ArgumentParser
import Comm
import Foundation

/// `zerotrain trace RUN_DIR`: compares the flight-recorder dumps the ranks of a failed job wrote
/// to RUN_DIR/forensics (`FlightTrace`) and prints which collective did not complete, and where.
struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Analyse a failed job's flight-recorder dumps (RUN_DIR/forensics/rank-*.json).",
        discussion: "Prints, per membership epoch, the first collective not every rank completed, which ranks started and completed it, collectives that differ between ranks at the same sequence, and ranks that wrote no dump.")

    @Argument(help: "The job's run directory (or its forensics folder).")
    var runDir: String

    func run() throws {
        try runReportingErrors {
            let given = URL(fileURLWithPath: runDir)
            let nested = given.appendingPathComponent("forensics")
            var isDirectory: ObjCBool = false
            let folder = FileManager.default.fileExists(atPath: nested.path, isDirectory: &isDirectory) && isDirectory.boolValue ? nested : given
            let dumps = try FlightDump.load(directory: folder)
            guard !dumps.isEmpty else {
                throw CommError(.invalidArgument, "no flight-recorder dumps (rank-*.json) in \(nested.path): no collective failed, or the run directory is wrong")
            }
            let job = FlightTrace.latestJob(dumps)
            Console.out("job \(job.jobID): \(job.dumps.count) dump(s) from ranks \(job.dumps.map { String($0.rank) }.joined(separator: ", ")) of \(job.dumps.map(\.worldSize).max() ?? 0)")
            for d in job.dumps { Console.out("rank \(d.rank): \(d.error)") }
            for line in FlightTrace.report(FlightTrace.analyze(job.dumps)) { Console.out(line) }
        }
    }
}
