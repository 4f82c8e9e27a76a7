import ArgumentParser
import Foundation

struct Systemd: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Render or install the systemd units (deploy/systemd: coordinator, worker@ID, target, serve).",
        subcommands: [SystemdRender.self, SystemdInstall.self])
}

/// What the two subcommands share: the binary path and this host's units.
struct UnitOptions: ParsableArguments {
    @Option(name: .long, help: "Path of the zerotrain binary on the host (default: /usr/local/bin/zerotrain).")
    var bin: String = "/usr/local/bin/zerotrain"

    @Option(name: .long, help: "Worker instances (ids) this host runs, comma-separated; empty for none.")
    var workers: String = "0"

    @Flag(name: .long, help: "This host runs workers only (no coordinator unit).")
    var noCoordinator = false

    func units() throws -> SystemdUnits {
        guard bin.hasPrefix("/") else { throw ValidationError("--bin must be an absolute path (systemd requires one), got \(bin)") }
        var ids: [Int] = []
        for part in workers.split(separator: ",", omittingEmptySubsequences: false) where !(workers.isEmpty && part.isEmpty) {
            guard let id = Int(part.trimmingCharacters(in: .whitespaces)), id >= 0 else {
                throw ValidationError("--workers \(workers): expected worker ids like 0,1,2")
            }
            guard !ids.contains(id) else { throw ValidationError("--workers \(workers): worker \(id) is listed twice") }
            ids.append(id)
        }
        guard !noCoordinator || !ids.isEmpty else { throw ValidationError("--no-coordinator with no --workers leaves nothing to run on this host") }
        return SystemdUnits(binary: bin, coordinator: !noCoordinator, workers: ids)
    }
}

struct SystemdRender: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Write the units (and with --env the example environment files) into a directory, or print them.")

    @OptionGroup var unit: UnitOptions

    @Option(name: .long, help: "Directory to write into (default: print to stdout).")
    var out: String?

    @Flag(name: .long, help: "Also write the example environment files (common.env, coordinator.env, worker-0.env, serve.env).")
    var env = false

    func run() throws {
        try runReportingErrors {
            let units = try unit.units()
            let files = units.files + (env ? units.environmentFiles : [])
            guard let out else {
                for f in files { Console.out("# \(f.name)\n" + f.text) }
                return
            }
            let dir = URL(fileURLWithPath: out)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for f in files {
                try Data(f.text.utf8).write(to: dir.appendingPathComponent(f.name), options: .atomic)
                Console.out("wrote \(dir.appendingPathComponent(f.name).path)")
            }
        }
    }
}

struct SystemdInstall: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Install the units into ROOT/etc/systemd/system and example environment files into ROOT/etc/zerotrain (existing ones are kept).",
        discussion: "Then: systemctl daemon-reload; edit /etc/zerotrain/*.env and job.yaml; systemctl enable --now zerotrain.target (docs/operations.md).")

    @OptionGroup var unit: UnitOptions

    @Option(name: .long, help: "Root of the file system to install into (default /; a directory for images and tests).")
    var root: String = "/"

    func run() throws {
        try runReportingErrors {
            let units = try unit.units()
            let fm = FileManager.default
            let rootURL = URL(fileURLWithPath: root)
            let unitDir = rootURL.appendingPathComponent("etc/systemd/system"), envDir = rootURL.appendingPathComponent("etc/zerotrain")
            do {
                try fm.createDirectory(at: unitDir, withIntermediateDirectories: true)
                try fm.createDirectory(at: envDir, withIntermediateDirectories: true)
                for f in units.files {
                    try Data(f.text.utf8).write(to: unitDir.appendingPathComponent(f.name), options: .atomic)
                    Console.out("installed \(unitDir.appendingPathComponent(f.name).path)")
                }
                for f in units.environmentFiles {
                    let url = envDir.appendingPathComponent(f.name)
                    if fm.fileExists(atPath: url.path) {
                        Console.out("kept \(url.path)")
                    } else {
                        try Data(f.text.utf8).write(to: url, options: .atomic)
                        Console.out("wrote \(url.path) (an example: edit it)")
                    }
                }
            } catch {
                throw ValidationError("cannot install into \(root): \(error.localizedDescription) (run as root, or pass --root DIR)")
            }
            Console.out("next: systemctl daemon-reload && systemctl enable --now zerotrain.target")
        }
    }
}
