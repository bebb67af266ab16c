// An example ferrule plugin in C++17: a word counter. Its state is a C++
// object made in init and destroyed in shutdown, its text results are
// std::strings, and every entry from the host runs inside ferrule::guard, so
// an exception becomes an error in Python instead of aborting the process.
// Build: see README.md.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ferrule.h"

namespace {

// Letters, digits and apostrophes make words; bytes of non-ASCII UTF-8
// characters count as letters, so "café" stays one word.
bool is_word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\'' || c >= 0x80;
}

// The words of text, ASCII letters lower-cased.
std::vector<std::string> split_words(std::string_view text) {
    std::vector<std::string> words;
    std::string word;
    for (char ch : text) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (is_word_byte(c)) {
            word += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : ch;
        } else if (!word.empty()) {
            words.push_back(std::move(word));
            word.clear();
        }
    }
    if (!word.empty()) {
        words.push_back(std::move(word));
    }
    return words;
}

std::string_view text_arg(const ferrule_value &value) {
    return {static_cast<const char *>(value.bytes.ptr), value.bytes.len};
}

// One instance's state. The containers free themselves; the destructor only
// logs, so that the host's log shows that shutdown destroyed it.
class WordStats {
public:
    // config: the stopwords, separated by white space.
    WordStats(const ferrule_host *host, std::string_view config) : host_(host) {
        std::string_view rest = config;
        while (!rest.empty()) {
            size_t start = rest.find_first_not_of(" \t\r\n");
            if (start == std::string_view::npos) {
                break;
            }
            rest.remove_prefix(start);
            std::string_view item = rest.substr(0, rest.find_first_of(" \t\r\n"));
            rest.remove_prefix(item.size());
            std::vector<std::string> words = split_words(item);
            if (words.size() != 1 || words[0].size() != item.size()) {
                throw std::invalid_argument("stopword '" + std::string(item) +
                                            "' is not a word: give the stopwords as words separated by spaces");
            }
            stopwords_.insert(words[0]);
        }
    }

    WordStats(const WordStats &) = delete;
    WordStats &operator=(const WordStats &) = delete;

    ~WordStats() {
        char line[96];
        std::snprintf(line, sizeof line, "wordstat: state destroyed, %zu distinct words", counts_.size());
        ferrule_log(host_, FERRULE_LOG_INFO, line);
    }

    size_t stopword_count() const { return stopwords_.size(); }
    size_t distinct() const { return counts_.size(); }

    // Counts the words of text that are not stopwords; returns how many.
    uint64_t add(std::string_view text) {
        uint64_t added = 0;
        for (std::string &word : split_words(text)) {
            if (stopwords_.count(word) == 0) {
                counts_[std::move(word)]++;
                added++;
            }
        }
        return added;
    }

    uint64_t count(std::string_view word) const {
        std::vector<std::string> words = split_words(word);
        if (words.size() != 1) {
            return 0;
        }
        auto found = counts_.find(words[0]);
        return found == counts_.end() ? 0 : found->second;
    }

    // "word count" lines, most frequent first, ties in byte order.
    std::string top(uint64_t n) const {
        std::vector<std::pair<std::string, uint64_t>> entries(counts_.begin(), counts_.end());
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto &a, const auto &b) { return a.second > b.second; });
        std::string out;
        for (size_t i = 0; i < entries.size() && i < n; i++) {
            out += entries[i].first + ' ' + std::to_string(entries[i].second) + '\n';
        }
        return out;
    }

    // Adds the counts of a listing in top's format. All or nothing: a bad
    // line throws std::invalid_argument before anything is counted.
    uint64_t load(std::string_view listing) {
        std::vector<std::pair<std::string, uint64_t>> parsed;
        size_t number = 0;
        while (!listing.empty()) {
            std::string_view line = listing.substr(0, listing.find('\n'));
            listing.remove_prefix(std::min(listing.size(), line.size() + 1));
            number++;
            if (!line.empty()) {
                parsed.push_back(parse_line(line, number));
            }
        }
        for (auto &entry : parsed) {
            counts_[std::move(entry.first)] += entry.second;
        }
        return parsed.size();
    }

private:
    static std::pair<std::string, uint64_t> parse_line(std::string_view line, size_t number) {
        size_t space = line.find(' ');
        std::string where = "line " + std::to_string(number) + " '" + std::string(line) + "'";
        std::vector<std::string> words = split_words(line.substr(0, space));
        std::string digits(line.substr(space == std::string_view::npos ? line.size() : space + 1));
        if (words.size() != 1 || digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) {
            throw std::invalid_argument(where + ": expected 'word count', a word, a space and a decimal count");
        }
        try {
            return {words[0], std::stoull(digits)};
        } catch (const std::out_of_range &) {  // what() is only "stoull": say which line
            throw std::invalid_argument(where + ": the count does not fit in 64 bits");
        }
    }

    const ferrule_host *host_;
    std::set<std::string> stopwords_;
    std::map<std::string, uint64_t> counts_;
};

WordStats &stats(void *state) { return *static_cast<WordStats *>(state); }

int32_t wordstat_init(const ferrule_host *host, const char *config, size_t config_len, void **state) {
    return ferrule::guard(host, [&] {
        auto made = std::make_unique<WordStats>(host, std::string_view(config, config_len));
        char line[64];
        std::snprintf(line, sizeof line, "wordstat ready, %zu stopwords", made->stopword_count());
        ferrule_log(host, FERRULE_LOG_INFO, line);
        *state = made.release();
    });
}

void wordstat_shutdown(const ferrule_host *host, void *state) {
    ferrule::guard_cleanup(host, [&] { delete static_cast<WordStats *>(state); });
}

int32_t wordstat_add(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    return ferrule::guard(host, [&] { ret->u64 = stats(state).add(text_arg(args[0])); });
}

int32_t wordstat_count(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    return ferrule::guard(host, [&] { ret->u64 = stats(state).count(text_arg(args[0])); });
}

int32_t wordstat_distinct(const ferrule_host *host, void *state, const ferrule_value *, ferrule_value *ret) {
    return ferrule::guard(host, [&] { ret->u64 = stats(state).distinct(); });
}

int32_t wordstat_top(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    return ferrule::guard(host, [&] {
        std::string text = stats(state).top(args[0].u64);
        // The host copies the bytes and frees them with host->free; the
        // std::string is destroyed when the lambda returns.
        return ferrule_return_copy(host, ret, text.data(), text.size());
    });
}

int32_t wordstat_load(const ferrule_host *host, void *state, const ferrule_value *args, ferrule_value *ret) {
    return ferrule::guard(host, [&] { ret->u64 = stats(state).load(text_arg(args[0])); });
}

const ferrule_function f_add = FERRULE_FUNCTION(
    "add", "(text: str) -> u64", "Count the words of text that are not stopwords; returns how many.", 0, wordstat_add);
const ferrule_function f_count = FERRULE_FUNCTION(
    "count", "(word: str) -> u64", "How often word was counted (case-insensitive for ASCII).", 0, wordstat_count);
const ferrule_function f_distinct = FERRULE_FUNCTION(
    "distinct", "() -> u64", "How many different words were counted.", 0, wordstat_distinct);
const ferrule_function f_top = FERRULE_FUNCTION(
    "top", "(n: u32) -> str", "The n most frequent words, one 'word count' line each.", 0, wordstat_top);
const ferrule_function f_load = FERRULE_FUNCTION(
    "load", "(listing: str) -> u64", "Add the counts of a listing in top's format; returns its entries.", 0,
    wordstat_load);

const ferrule_function *const functions[] = {&f_add, &f_count, &f_distinct, &f_top, &f_load};

const ferrule_plugin descriptor = {
    FERRULE_PLUGIN_HEAD,
    "org.ferrule.examples.wordstat",
    "Word statistics",
    "0.1.0",
    "A C++ plugin: RAII state, std::string results, exceptions turned into errors.",
    "MIT",
    sizeof functions / sizeof functions[0],
    0,
    functions,
    wordstat_init,
    wordstat_shutdown,
    0,  // interfaces (ABI 1.2): none
    0,
    nullptr,
};

}  // namespace

FERRULE_ENTRY { return &descriptor; }
