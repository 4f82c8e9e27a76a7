import Data
import Testing

@Suite struct QualityFilterTests {
    static let good = SyntheticCorpus().document(3, words: 120)

    func dropped(_ text: String, _ configure: (inout FilterConfig) -> Void = { _ in }) -> String? {
        var c = FilterConfig()
        configure(&c)
        return QualityFilter(config: c).apply(text).droppedBy
    }

    @Test func generatedProsePasses() {
        let corpus = SyntheticCorpus()
        for i in 0..<20 {
            #expect(dropped(corpus.document(i, words: 150)) == nil)
        }
    }

    /// Planted junk, each caught by its rule.
    @Test(arguments: [
        ("short words only", "gopher_quality.word_count"),
        ("lorem", "c4.lorem_ipsum"),
        ("brace", "c4.curly_brace"),
        ("repeated lines", "gopher_repetition.duplicate_paragraphs"),
        ("no stop words", "gopher_quality.stop_words"),
        ("hashes", "gopher_quality.symbol_word_ratio"),
        ("long words", "gopher_quality.mean_word_length"),
        ("few sentences", "c4.min_sentences"),
    ])
    func junkIsDropped(_ c: (String, String)) {
        let sentence = "The river runs to the sea with the boats of the town and that is good."
        let text: String
        var configure: (inout FilterConfig) -> Void = { _ in }
        switch c.0 {
        case "short words only": text = "Too short to keep and that is all of it. It is. It was."
        case "lorem": text = Self.good + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit."
        case "brace": text = Self.good + "\nfunction f() { return the value of x and y; }."
        case "repeated lines": text = Array(repeating: sentence, count: 12).joined(separator: "\n\n")
        case "no stop words":
            text = (0..<12).map { "Alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima\($0)." }.joined(separator: "\n")
            configure = { $0.gopherRepetition.enabled = false }
        case "hashes":
            text = (0..<12).map { "The #market of the #country and #history with #parliament in the \($0) #weather." }.joined(separator: "\n")
            configure = { $0.gopherRepetition.enabled = false }
        case "long words":
            text = (0..<12).map { "Extraordinarily incomprehensible characteristically internationalization counterrevolutionaries \($0) the and with." }.joined(separator: "\n")
            configure = { $0.gopherRepetition.enabled = false }
        default: text = "The first line of the text has words in it and that is it.\nthe second has no end punctuation at all so it goes"
        }
        #expect(dropped(text, configure) == c.1)
    }

    @Test func c4LineRulesRemoveLinesAndCount() {
        var c = FilterConfig()
        c.gopherQuality.enabled = false
        c.gopherRepetition.enabled = false
        let text = """
        A proper sentence with enough words ends here.
        no terminal punctuation in this line at all
        Too short.
        Please enable JavaScript to view the comments on this site.
        Read our cookie policy and the terms of use before you go on.
        Another proper sentence with enough words ends here!
        A third sentence with plenty of words ends here?
        """
        let o = QualityFilter(config: c).apply(text)
        #expect(o.text == "A proper sentence with enough words ends here.\nAnother proper sentence with enough words ends here!\nA third sentence with plenty of words ends here?")
        #expect(o.linesRemoved == ["c4.line.terminal_punctuation": 1, "c4.line.min_words": 1, "c4.line.javascript": 1, "c4.line.policy": 1])
    }

    @Test func rulesSwitchOffAndThresholdsApply() {
        let lorem = Self.good + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit."
        #expect(dropped(lorem) { $0.c4.dropLoremIpsum = false } == nil)
        #expect(dropped(Self.good) { $0.gopherQuality.minWords = 1000 } == "gopher_quality.word_count")
        #expect(dropped(Self.good) { $0.gopherQuality.minWords = 1000; $0.gopherQuality.enabled = false } == nil)
        #expect(dropped(Self.good) { $0.c4.badWords = [String(SyntheticCorpus().document(3, words: 120).split(separator: " ")[5].lowercased().filter(\.isLetter))] } == "c4.bad_words")
    }
}
