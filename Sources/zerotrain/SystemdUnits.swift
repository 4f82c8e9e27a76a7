/// The systemd units of deploy/systemd, rendered for a binary path and this host's worker
/// instances (`zerotrain systemd render`). deploy/systemd holds them rendered with the defaults;
/// a test checks that the files and this rendering agree, and that `systemd-analyze verify`
/// prints nothing for them.
struct SystemdUnits {
    /// Absolute path of the `zerotrain` binary on the hosts.
    var binary = "/usr/local/bin/zerotrain"
    /// Whether this host runs the coordinator.
    var coordinator = true
    /// Worker instances (ids) this host runs.
    var workers = [0]
    /// Where the environment files live.
    var configDirectory = "/etc/zerotrain"

    /// File name → contents.
    var files: [(name: String, text: String)] {
        var f = [(name: "zerotrain.target", text: target)]
        if coordinator { f.append(("zerotrain-coordinator.service", coordinatorService)) }
        f.append(("zerotrain-worker@.service", workerService))
        f.append(("zerotrain-serve.service", serveService))
        return f
    }

    /// Environment files (examples: an operator edits them in /etc/zerotrain).
    var environmentFiles: [(name: String, text: String)] {
        [("common.env", """
          # Read by every ZeroTrain unit on this host (EnvironmentFile=). KEY=VALUE lines.
          # The job's config file (the same file on every host; workers refuse a different one).
          ZEROTRAIN_CONFIG=\(configDirectory)/job.yaml
          # The coordinator's control endpoint, as workers reach it.
          ZEROTRAIN_COORDINATOR=tcp://10.0.0.1:5555
          # OpenBLAS must not start more threads than the devices use (set before the process starts).
          OPENBLAS_NUM_THREADS=1

          """),
         ("coordinator.env", """
          # Read by zerotrain-coordinator.service.
          # Control endpoint to bind (all interfaces, port 5555).
          ZEROTRAIN_LISTEN=tcp://0.0.0.0:5555
          # Prometheus /metrics, /status and the live page; loopback unless you open it on purpose.
          ZEROTRAIN_HTTP=127.0.0.1:9090
          # Workers to wait for before training starts (overrides cluster.workers).
          ZEROTRAIN_WORKERS=3

          """),
         ("worker-0.env", """
          # Read by zerotrain-worker@0.service (one file per instance: worker-<id>.env).
          # CPU devices (ranks) in this worker, and compute threads per device.
          ZEROTRAIN_DEVICES=1
          ZEROTRAIN_THREADS=4
          # The address other workers reach this one at (ring links).
          ZEROTRAIN_ADVERTISE=10.0.0.2

          """),
         ("serve.env", """
          # Read by zerotrain-serve.service (`zerotrain serve`, docs/serving.md).
          # The model: a checkpoint directory, a step folder or a Hugging Face folder (read-only is enough).
          ZEROTRAIN_MODEL=/srv/zerotrain/model
          # Address of the HTTP API; loopback unless a proxy in front of it, or you, open it on purpose.
          ZEROTRAIN_SERVE_LISTEN=127.0.0.1:8080
          # Limits: --max-tokens, --max-batch, --max-queue, --request-timeout, --max-body-bytes, --threads.
          ZEROTRAIN_SERVE_ARGS=--max-batch 16 --max-queue 64 --threads 4

          """)]
    }

    var target: String {
        var wants = workers.map { "zerotrain-worker@\($0).service" }
        if coordinator { wants.insert("zerotrain-coordinator.service", at: 0) }
        return """
        [Unit]
        Description=ZeroTrain training job (the units of this host)
        Wants=\(wants.joined(separator: " "))

        [Install]
        WantedBy=multi-user.target

        """
    }

    /// Hardening shared by both services (systemd.exec(5)); no MemoryDenyWriteExecute: oneDNN
    /// compiles its kernels at run time. @resources adds the NUMA calls (mbind, set_mempolicy).
    private var hardening: String {
        """
        DynamicUser=yes
        ProtectSystem=strict
        ProtectHome=yes
        PrivateTmp=yes
        PrivateDevices=yes
        NoNewPrivileges=yes
        ProtectKernelTunables=yes
        ProtectKernelModules=yes
        ProtectKernelLogs=yes
        ProtectControlGroups=yes
        ProtectClock=yes
        ProtectHostname=yes
        RestrictRealtime=yes
        RestrictSUIDSGID=yes
        RestrictNamespaces=yes
        RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
        LockPersonality=yes
        SystemCallArchitectures=native
        SystemCallFilter=@system-service @resources
        SystemCallErrorNumber=EPERM
        CapabilityBoundingSet=
        UMask=0027
        LimitNOFILE=65536
        """
    }

    var coordinatorService: String {
        // Stopping runs in reverse start order: the coordinator starts after this host's workers,
        // so it stops first — it checkpoints and shuts the workers down before they are stopped.
        let after = ["network-online.target"] + workers.map { "zerotrain-worker@\($0).service" }
        return """
        [Unit]
        Description=ZeroTrain coordinator: admits workers, drives training, checkpoints
        Wants=network-online.target
        After=\(after.joined(separator: " "))
        PartOf=zerotrain.target
        StartLimitIntervalSec=600
        StartLimitBurst=5

        [Service]
        Type=notify
        NotifyAccess=main
        EnvironmentFile=-\(configDirectory)/common.env
        EnvironmentFile=-\(configDirectory)/coordinator.env
        # Config, endpoints and HTTP from the environment files (ZEROTRAIN_CONFIG, ZEROTRAIN_LISTEN, ZEROTRAIN_HTTP,
        # ZEROTRAIN_WORKERS); run directory and checkpoints in the state directory; a restart resumes from the newest checkpoint.
        ExecStart=\(binary) coordinator --run-dir %S/zerotrain/coordinator --resume auto
        # SIGTERM: finish the update, checkpoint, shut the workers down; the exit status of a stop is 130.
        KillSignal=SIGTERM
        SuccessExitStatus=130
        KillMode=mixed
        TimeoutStartSec=120
        TimeoutStopSec=300
        WatchdogSec=120s
        Restart=on-failure
        RestartSec=10s
        StateDirectory=zerotrain/coordinator
        \(hardening)

        [Install]
        WantedBy=zerotrain.target

        """
    }

    /// The inference server; not part of the training target. SIGTERM drains: new requests get 503,
    /// accepted ones finish, then it exits 0.
    var serveService: String {
        """
        [Unit]
        Description=ZeroTrain inference server: /predict and OpenAI-compatible completions over HTTP
        Wants=network-online.target
        After=network-online.target
        StartLimitIntervalSec=600
        StartLimitBurst=5

        [Service]
        Type=notify
        NotifyAccess=main
        EnvironmentFile=-\(configDirectory)/serve.env
        # The model and the address from the environment file (ZEROTRAIN_MODEL, ZEROTRAIN_SERVE_LISTEN, ZEROTRAIN_SERVE_ARGS).
        ExecStart=\(binary) serve --model ${ZEROTRAIN_MODEL} --listen ${ZEROTRAIN_SERVE_LISTEN} $ZEROTRAIN_SERVE_ARGS
        # SIGTERM: stop accepting (503), finish the accepted requests, exit 0.
        KillSignal=SIGTERM
        KillMode=mixed
        TimeoutStartSec=300
        TimeoutStopSec=120
        Restart=on-failure
        RestartSec=5s
        \(hardening)

        [Install]
        WantedBy=multi-user.target

        """
    }

    var workerService: String {
        """
        [Unit]
        Description=ZeroTrain worker %i: hosts CPU devices (ranks) for the coordinator's job
        Wants=network-online.target
        After=network-online.target
        PartOf=zerotrain.target
        StartLimitIntervalSec=600
        StartLimitBurst=5

        [Service]
        Type=notify
        NotifyAccess=main
        Environment=ZEROTRAIN_WORKER_ID=%i
        EnvironmentFile=-\(configDirectory)/common.env
        EnvironmentFile=-\(configDirectory)/worker-%i.env
        # Settings come from the environment (ZEROTRAIN_COORDINATOR, ZEROTRAIN_DEVICES, ...: docs/operations.md).
        ExecStart=\(binary) worker
        # SIGTERM: leave the job (the coordinator recovers or stops; status 130); a worker the coordinator shut down exits 0.
        KillSignal=SIGTERM
        SuccessExitStatus=130
        KillMode=mixed
        TimeoutStartSec=300
        TimeoutStopSec=120
        # Pinged after every step: a step longer than this is taken for a hang (raise it for big models).
        WatchdogSec=300s
        Restart=on-failure
        RestartSec=5s
        StateDirectory=zerotrain/worker-%i
        \(hardening)

        [Install]
        WantedBy=zerotrain.target

        """
    }
}
