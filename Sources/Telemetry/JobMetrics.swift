import class CoreMetrics.Timer
import Prometheus

/// The job's Prometheus metrics (text format 0.0.4 from `exposition`), in swift-prometheus's
/// registry — the step-duration histogram through the swift-metrics API (a `Timer` made by a
/// `PrometheusMetricsFactory` over the same registry, not the process-wide bootstrap, so that
/// several coordinators in one process keep their own): one `zerotrain_` prefix, base units (seconds, bytes, ratios 0–1), `_total` on
/// counters, and only bounded labels (`rank` < world size, `tier` ∈ device/host/disk).
public final class JobMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    private let steps, skippedSteps, tokens, checkpoints, recoveries: Counter
    private let loss, auxLoss, learningRate, gradNorm, tokensPerSecond, mfu, step, workers, worldSize, lastCheckpointStep: Gauge
    private let stepDuration: Timer

    public init(version: String) {
        let r = registry
        r.makeGauge(name: "zerotrain_build_info", labels: [("version", version)], help: "The running build (value 1).").set(1.0)
        steps = r.makeCounter(name: "zerotrain_steps_total", help: "Optimizer updates finished (skipped ones included).")
        skippedSteps = r.makeCounter(name: "zerotrain_skipped_steps_total", help: "Updates skipped for a non-finite loss or gradient norm.")
        tokens = r.makeCounter(name: "zerotrain_tokens_processed_total", help: "Tokens trained on, all ranks.")
        checkpoints = r.makeCounter(name: "zerotrain_checkpoints_total", help: "Checkpoints committed by this coordinator.")
        recoveries = r.makeCounter(name: "zerotrain_recoveries_total", help: "Membership recoveries (a lost worker or failed device).")
        loss = r.makeGauge(name: "zerotrain_loss", help: "Training loss (mean cross-entropy) of the last update.")
        auxLoss = r.makeGauge(name: "zerotrain_aux_loss", help: "MoE load-balancing loss of the last update (0 for dense models).")
        learningRate = r.makeGauge(name: "zerotrain_learning_rate", help: "Learning rate of the last update.")
        gradNorm = r.makeGauge(name: "zerotrain_grad_norm", help: "Global L2 gradient norm before clipping, last update.")
        tokensPerSecond = r.makeGauge(name: "zerotrain_tokens_per_second", help: "Throughput of the last update, all ranks.")
        mfu = r.makeGauge(name: "zerotrain_mfu_ratio", help: "Model FLOPs utilisation of the last update, 0-1 (0 when the peak is unknown).")
        step = r.makeGauge(name: "zerotrain_step", help: "Updates done in the job (the next update's index).")
        workers = r.makeGauge(name: "zerotrain_workers_connected", help: "Workers in the current membership.")
        worldSize = r.makeGauge(name: "zerotrain_world_size", help: "Ranks in the current membership.")
        lastCheckpointStep = r.makeGauge(name: "zerotrain_last_checkpoint_step", help: "Step of the newest committed checkpoint (-1: none).")
        lastCheckpointStep.set(-1.0)
        // Every rule's series exists from the start (at 0), so alerts can use increase().
        for rule in HealthMonitor.Rule.allCases {
            r.makeCounter(name: "zerotrain_health_warnings_total", labels: [("rule", rule.rawValue)],
                          help: "Training-health warnings raised, by rule.")
        }
        var factory = PrometheusMetricsFactory(registry: r)
        factory.durationHistogramBuckets["zerotrain_step_duration_seconds"] =
            [.milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
             .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60)]
        stepDuration = Timer(label: "zerotrain_step_duration_seconds", factory: factory)
    }

    public func record(_ s: StepSample) {
        steps.increment()
        if s.skipped { skippedSteps.increment() }
        tokens.increment(by: Int64(s.tokens))
        if s.loss.isFinite { loss.set(s.loss) }
        auxLoss.set(s.auxLoss ?? 0)
        learningRate.set(s.learningRate)
        if s.gradNorm.isFinite { gradNorm.set(s.gradNorm) }
        tokensPerSecond.set(s.tokensPerSecond)
        mfu.set(s.mfu ?? 0)
        step.set(Double(s.step + 1))
        stepDuration.recordNanoseconds(Int64(max(0, s.seconds) * 1e9))
        for rank in s.ranks {
            let label = [("rank", String(rank.rank))]
            registry.makeGauge(name: "zerotrain_rank_compute_seconds", labels: label,
                               help: "Seconds of the last update the rank spent computing.").set(rank.computeSeconds)
            registry.makeGauge(name: "zerotrain_rank_exposed_communication_seconds", labels: label,
                               help: "Seconds of the last update the rank waited on communication that did not overlap compute.")
                .set(rank.exposedCommunicationSeconds)
            registry.makeGauge(name: "zerotrain_rank_checkpoint_seconds", labels: label,
                               help: "Seconds the rank spent on checkpoint snapshots before the last update.").set(rank.checkpointSeconds)
            registry.makeGauge(name: "zerotrain_rank_data_seconds", labels: label,
                               help: "Seconds of the last update the rank spent reading its micro-batches (data loading).").set(rank.dataSeconds)
            registry.makeGauge(name: "zerotrain_rank_device_utilization_ratio", labels: label,
                               help: "Busy (compute) time over wall time of the last update, 0-1.").set(rank.utilization)
            registry.makeCounter(name: "zerotrain_rank_sent_bytes_total", labels: label,
                                 help: "Payload bytes the rank sent in collectives.").increment(by: Int64(rank.sentBytes))
            for tier in StepSample.tiers {
                let labels = [("rank", String(rank.rank)), ("tier", tier)]
                registry.makeGauge(name: "zerotrain_rank_memory_bytes", labels: labels,
                                   help: "Bytes the rank holds in a memory tier now.").set(Double(rank.memoryBytes[tier] ?? 0))
                registry.makeGauge(name: "zerotrain_rank_memory_peak_bytes", labels: labels,
                                   help: "Peak bytes the rank held in a memory tier.").set(Double(rank.memoryPeakBytes[tier] ?? 0))
            }
        }
    }

    public func membership(workers w: Int, worldSize n: Int) {
        workers.set(Double(w))
        worldSize.set(Double(n))
    }

    public func checkpointCommitted(step s: Int) {
        checkpoints.increment()
        lastCheckpointStep.set(Double(s))
    }

    public func recovered() { recoveries.increment() }

    /// A checkpoint that could not be saved (the job went on without it, or stopped).
    public func checkpointLost() {
        registry.makeCounter(name: "zerotrain_checkpoint_failures_total", help: "Checkpoints that could not be saved.").increment()
    }

    /// A health-monitor warning (`rule`: one of `HealthMonitor.Rule`).
    public func healthWarning(_ rule: HealthMonitor.Rule) {
        registry.makeCounter(name: "zerotrain_health_warnings_total", labels: [("rule", rule.rawValue)],
                             help: "Training-health warnings raised, by rule.").increment()
    }

    /// The exposition, `\n`-terminated.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}
