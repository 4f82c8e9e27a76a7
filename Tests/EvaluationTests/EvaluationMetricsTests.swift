import Evaluation
import Foundation
import Testing
import ZeroTrainTestKit

/// The metrics against fixtures written by scripts/make-eval-fixtures.py: BLEU and 13a tokens by
/// sacreBLEU itself, exact match and F1 by the SQuAD v1.1 script's definitions.
@Suite struct EvaluationMetricsTests {
    static func fixture(_ name: String) throws -> [String: Any] {
        let url = Fixtures.root.appendingPathComponent("evaluation/\(name)")
        return try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }

    @Test func tokenizer13aMatchesSacreBLEU() throws {
        let lines = try Self.fixture("bleu.json")["tokenizer_13a"] as! [[String: String]]
        #expect(lines.count > 20)
        let tokenizer = Tokenizer13a()
        for l in lines { #expect(tokenizer(l["line"]!) == l["tokens"]!, "line \(l["line"]!.debugDescription)") }
    }

    @Test func corpusBLEUMatchesSacreBLEU() throws {
        let cases = try Self.fixture("bleu.json")["cases"] as! [[String: Any]]
        #expect(cases.count >= 50)
        for c in cases {
            let settings = c["settings"] as! [String: Any]
            let bleu = CorpusBLEU(smoothing: try .init(name: settings["smooth_method"] as! String, value: settings["smooth_value"] as? Double),
                                  lowercase: settings["lowercase"] as? Bool ?? false,
                                  tokenize: (settings["tokenize"] as? String) != "none",
                                  effectiveOrder: settings["effective_order"] as? Bool ?? false)
            let s = bleu.score(hypotheses: c["hypotheses"] as! [String], references: c["references"] as! [[String]])
            let label = "\(c["corpus"]!) \(settings)"
            #expect(s.statistics.hypothesisLength == c["sys_len"] as! Int, "\(label)")
            #expect(s.statistics.referenceLength == c["ref_len"] as! Int, "\(label)")
            // sacreBLEU reports add-k's smoothed counts (k added from order 2 on), except when
            // nothing matches at all (it returns 0 before smoothing).
            var k = 0.0
            if case .addK(let v) = bleu.smoothing, s.statistics.matches.contains(where: { $0 > 0 }) { k = v }
            let smoothed = { (counts: [Int]) in counts.enumerated().map { Double($1) + ($0 > 0 ? k : 0) } }
            #expect(smoothed(s.statistics.totals) == (c["totals"] as! [NSNumber]).map(\.doubleValue), "\(label)")
            #expect(smoothed(s.statistics.matches) == (c["counts"] as! [NSNumber]).map(\.doubleValue), "\(label)")
            #expect(abs(s.brevityPenalty - (c["bp"] as! Double)) <= 1e-12, "\(label)")
            // Same formula, same order of operations: equal to the last bits or nearly (1e-9 of a BLEU point).
            #expect(abs(s.score - (c["score"] as! Double)) <= 1e-9, "\(label): \(s.score) vs \(c["score"]!)")
            for (mine, theirs) in zip(s.precisions, c["precisions"] as! [Double]) {
                #expect(abs(mine - theirs) <= 1e-9, "\(label) precisions \(s.precisions) vs \(c["precisions"]!)")
            }
        }
    }

    @Test func readmeExampleIs48_53() {
        let s = CorpusBLEU().score(hypotheses: ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."],
                                   references: [["The dog bit the man.", "The dog had bit the man."],
                                                ["It was not unexpected.", "No one was surprised."],
                                                ["The man bit him first.", "The man had bitten the dog."]])
        #expect(String(format: "%.2f", s.score) == "48.53")
    }

    @Test func squadExactMatchAndF1MatchTheScript() throws {
        let f = try Self.fixture("squad.json")
        let cases = f["cases"] as! [[String: Any]]
        var predictions: [String] = [], references: [[String]] = []
        for c in cases {
            let p = c["prediction"] as! String, r = c["references"] as! [String]
            predictions.append(p)
            references.append(r)
            #expect(SQuADMetrics.normalize(p) == c["normalized"] as! String, "\(p.debugDescription)")
            #expect(SQuADMetrics.exactMatch(prediction: p, references: r) == c["exact_match"] as! Double, "\(p.debugDescription)")
            #expect(abs(SQuADMetrics.f1(prediction: p, references: r) - (c["f1"] as! Double)) <= 1e-12, "\(p.debugDescription)")
        }
        let corpus = f["corpus"] as! [String: Double]
        let scores = TaskScores(predictions: predictions, references: references)
        #expect(abs(scores.exactMatch - corpus["exact_match"]!) <= 1e-9)
        #expect(abs(scores.f1 - corpus["f1"]!) <= 1e-9)
    }

    @Test func languageModelTotalsByHand() {
        // Two rows over a vocabulary of 3: logits (0, ln 2, 0) target 1 → p = 2/4; (3, 0, 0) target 2 → p = 1/(e³+2).
        let logits: [Float] = [0, Float(log(2.0)), 0, 3, 0, 0]
        var t = LanguageModelTotals()
        logits.withUnsafeBufferPointer { t.add(logits: $0, targets: [1, 2], vocab: 3) }
        let expected = -log(0.5) - log(1 / (exp(3.0) + 2))
        #expect(abs(t.negativeLogLikelihood - expected) < 1e-6)
        #expect(t.correct == 1 && t.tokens == 2)
        #expect(abs(t.loss - expected / 2) < 1e-6)
        #expect(abs(t.perplexity - exp(expected / 2)) < 1e-5)
        #expect(t.accuracy == 0.5)
        #expect((t + t).tokens == 4 && (t + t).correct == 2)
    }

    @Test(arguments: [
        ("{\"prompt\": \"q\"}\n", "x.jsonl:1: no field \"reference\""),
        ("{\"prompt\": \"q\", \"reference\": \"a\"}\n{\"reference\": \"a\"}\n", "x.jsonl:2: no string field \"prompt\""),
        ("{\"prompt\": \"q\", \"references\": []}\n", "x.jsonl:1: no field \"reference\""),
        ("not json\n", "x.jsonl:1: not a JSON object"),
        ("\n\n", "x.jsonl: no prompt/reference pairs"),
    ])
    func badReferenceFiles(text: String, message: String) {
        do {
            _ = try ReferenceFile(text: text, source: "x.jsonl")
            Issue.record("accepted \(text.debugDescription)")
        } catch let e as EvaluationError {
            #expect(e.kind == .badInput)
            #expect(e.message.hasPrefix(message), "\(e.message)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func unknownSmoothingIsBadInput() {
        #expect(throws: EvaluationError.self) { try CorpusBLEU.Smoothing(name: "laplace") }
    }
}
