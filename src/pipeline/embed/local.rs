//! The `local` embedding provider: deterministic lexical embeddings computed in-process, with no
//! network and no model files. Texts that share words (or word stems, through character
//! trigrams) point the same way; it knows nothing of synonyms or meaning beyond that.

use std::collections::hash_map::{Entry, HashMap};
use std::hash::Hash;

/// Its dimensions when `embedding_dimensions` is 0.
pub const DIMENSIONS: usize = 384;

pub const PROVIDER: &str = "local";
/// Changing the features, weights or hash below changes every vector: give the model a new name,
/// so that cached embeddings of the old one are not mixed with the new.
pub const MODEL: &str = "pageperfect-hashed-ngrams-v1";

/// Weight of a word, of a pair of adjacent words, and of a word's character trigrams taken
/// together (the trigram block of every word has this length, however long the word). Words carry
/// the topic; bigrams reward shared phrases; trigrams let "bake" meet "baking" half-way.
const WORD_WEIGHT: f64 = 1.0;
const BIGRAM_WEIGHT: f64 = 0.5;
const TRIGRAM_BLOCK_WEIGHT: f64 = 0.6;

/// Factor on every feature of a stopword. Without it, two unrelated English paragraphs agree on
/// "the", "of the", "it is" enough to look alike (cosine 0.6 for sentences with no topic word in
/// common). Not zero, so that a text made only of stopwords still gets a direction.
const STOPWORD_FACTOR: f64 = 0.1;

/// The most frequent English function words, as the tokeniser sees them ("don't" is "don", "t"),
/// sorted for binary search.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "s",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// Feature kinds are hashed with distinct prefixes, so that the word "cat" and the trigram
/// "cat" are different features.
const WORD_PREFIX: &[u8] = b"w\0";
const BIGRAM_PREFIX: &[u8] = b"b\0";
const TRIGRAM_PREFIX: &[u8] = b"t\0";

/// Embeds `text` as a unit vector of `dimensions` numbers (L2 norm 1): words are the runs of
/// letters and digits of the lowercased text, and the features are words, adjacent word pairs and
/// the character trigrams of each word. The same input gives the same bits on every run (only
/// the platform's `ln`, used for repeated features, could differ in a last bit elsewhere).
///
/// Text without a letter or digit has no features and gives the zero vector, which has no
/// direction: the caller must not take a cosine similarity with it (it would divide by zero)
/// and should treat it as "no content". (With very few dimensions, features can also cancel
/// out exactly; the result is then the zero vector too.)
///
/// Panics if `dimensions` is 0.
pub fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    assert!(dimensions >= 1, "embedding dimensions must be at least 1");
    let lowered = text.to_lowercase();
    let words: Vec<&str> = lowered
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();

    let word_counts = count_in_order(words.iter().copied());
    let bigram_counts = count_in_order(words.windows(2).map(|pair| (pair[0], pair[1])));

    let mut vector = vec![0.0f64; dimensions];
    let mut trigram = String::new();
    let mut padded = Vec::new();
    for &(word, count) in &word_counts {
        let tf = sublinear(count) * word_factor(word);
        add_feature(&mut vector, &[WORD_PREFIX, word.as_bytes()], WORD_WEIGHT * tf);
        // "^" and "$" mark the word's ends (they are never part of a word): "cat" gives "^ca",
        // "cat", "at$". A word of n characters has n trigrams; dividing by √n gives the block
        // the same length for every word.
        padded.clear();
        padded.push('^');
        padded.extend(word.chars());
        padded.push('$');
        let trigrams = padded.windows(3);
        let weight = TRIGRAM_BLOCK_WEIGHT * tf / (trigrams.len() as f64).sqrt();
        for window in trigrams {
            trigram.clear();
            trigram.extend(window);
            add_feature(&mut vector, &[TRIGRAM_PREFIX, trigram.as_bytes()], weight);
        }
    }
    for &((first, second), count) in &bigram_counts {
        add_feature(
            &mut vector,
            &[BIGRAM_PREFIX, first.as_bytes(), b" ", second.as_bytes()],
            BIGRAM_WEIGHT * sublinear(count) * word_factor(first) * word_factor(second),
        );
    }

    let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        return vec![0.0; dimensions];
    }
    vector.iter().map(|x| (x / norm) as f32).collect()
}

/// The distinct items with their counts, in order of first appearance: an order fixed by the text
/// alone, so that the floating-point sums in [`embed`] run in the same order on every run (a
/// HashMap's iteration order changes from run to run).
fn count_in_order<T: Hash + Eq + Copy>(items: impl Iterator<Item = T>) -> Vec<(T, u32)> {
    let mut index_of: HashMap<T, usize> = HashMap::new();
    let mut counts: Vec<(T, u32)> = Vec::new();
    for item in items {
        match index_of.entry(item) {
            Entry::Occupied(entry) => counts[*entry.get()].1 += 1,
            Entry::Vacant(entry) => {
                entry.insert(counts.len());
                counts.push((item, 1));
            }
        }
    }
    counts
}

fn word_factor(word: &str) -> f64 {
    if STOPWORDS.binary_search(&word).is_ok() {
        STOPWORD_FACTOR
    } else {
        1.0
    }
}

/// A feature seen `count` times counts 1 + ln(count): repetition matters, but ten mentions are not
/// ten times one.
fn sublinear(count: u32) -> f64 {
    1.0 + f64::from(count).ln()
}

/// The hashing trick with signs: the feature's hash picks a slot (from its low 63 bits) and whether
/// to add or subtract (its top bit), so that unrelated features sharing a slot cancel out on
/// average instead of piling up.
fn add_feature(vector: &mut [f64], parts: &[&[u8]], weight: f64) {
    let hash = feature_hash(parts);
    let slot = ((hash & (u64::MAX >> 1)) % vector.len() as u64) as usize;
    vector[slot] += if hash >> 63 == 1 { -weight } else { weight };
}

/// FNV-1a 64-bit of the bytes of `parts` in turn, then MurmurHash3's 64-bit finaliser, so that the
/// low bits taken by the modulo depend on every input bit (FNV-1a's low bits depend only on the
/// inputs' low bits). Fixed by this code alone, unlike std's hashers, which may change between
/// Rust releases.
fn feature_hash(parts: &[&[u8]]) -> u64 {
    finalise(fnv1a(parts))
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in parts.iter().flat_map(|part| part.iter()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn finalise(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        // Both are unit vectors: the dot product is the cosine.
        a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
    }

    fn norm(v: &[f32]) -> f64 {
        v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"foo", b"bar"]), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn stopwords_are_sorted_and_lowercase() {
        assert!(STOPWORDS.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(STOPWORDS.iter().all(|word| *word == word.to_lowercase()));
    }

    #[test]
    fn same_input_gives_the_same_bits() {
        let text = "How to bake sourdough bread at home, step by step.";
        let a: Vec<u32> = embed(text, 384).iter().map(|x| x.to_bits()).collect();
        let b: Vec<u32> = embed(text, 384).iter().map(|x| x.to_bits()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn pinned_vector_shows_a_change_of_hash_or_weights() {
        // The word "cat" (1.0) and its trigrams "^ca", "cat", "at$" (0.6 / √3 each), over the
        // norm √1.36, in four distinct slots.
        let v = embed("cat", 16);
        let nonzero: Vec<(usize, f32)> = v.iter().copied().enumerate().filter(|(_, x)| *x != 0.0).collect();
        assert_eq!(
            nonzero,
            [(1, 0.29704428), (3, 0.8574929), (5, -0.29704428), (12, -0.29704428)]
        );
    }

    #[test]
    fn vectors_have_unit_length_and_the_asked_dimensions() {
        for dimensions in [1, 8, 384, 1536] {
            let v = embed("Quarterly tax filing deadlines for freelancers", dimensions);
            assert_eq!(v.len(), dimensions);
            assert!((norm(&v) - 1.0).abs() < 1e-6, "norm {} at {dimensions}", norm(&v));
        }
    }

    #[test]
    fn case_and_punctuation_do_not_matter() {
        assert_eq!(embed("Cats, dogs!", 384), embed("cats dogs", 384));
        assert_eq!(embed("Ünïcode — WORDS", 64), embed("ünïcode words", 64));
    }

    #[test]
    fn related_texts_are_closer_than_unrelated_ones() {
        let bake = embed("how to bake sourdough bread at home", 384);
        let related = cosine(&bake, &embed("sourdough bread baking guide", 384));
        let unrelated = cosine(&bake, &embed("quarterly tax filing deadlines for freelancers", 384));
        // Measured: related 0.518, unrelated -0.139. Texts with no feature in common land around 0,
        // give or take collision noise (standard deviation about 0.05 at 384 dimensions, 0.025 at
        // 1536); this pair happens to collide negatively.
        assert!(related > 0.35, "related {related}");
        assert!(unrelated < 0.15, "unrelated {unrelated}");
    }

    #[test]
    fn text_without_words_gives_the_zero_vector() {
        for text in ["", "   \n\t ", "!!! — ...", "\u{a0}"] {
            assert_eq!(embed(text, 8), vec![0.0; 8], "{text:?}");
        }
    }

    #[test]
    #[should_panic(expected = "at least 1")]
    fn zero_dimensions_panic() {
        embed("text", 0);
    }

    #[test]
    fn long_text_is_fast() {
        let vocabulary = [
            "sourdough",
            "bread",
            "flour",
            "water",
            "salt",
            "starter",
            "oven",
            "crust",
            "crumb",
            "proof",
        ];
        let text: String = (0..100_000)
            .map(|i| format!("{}{} ", vocabulary[i % 10], i % 997))
            .collect();
        let started = std::time::Instant::now();
        let v = embed(&text, 1536);
        let elapsed = started.elapsed();
        assert!((norm(&v) - 1.0).abs() < 1e-6);
        // Well under a second in release; debug builds are several times slower.
        let limit = if cfg!(debug_assertions) { 5.0 } else { 0.5 };
        assert!(elapsed.as_secs_f64() < limit, "{elapsed:?}");
    }
}
