// Reader for a Hugging Face tokenizer: tokenizer.json (model BPE, either byte-level with
// ByteLevel / Split / Digits pre-tokenizers, or LLaMA-2-style SentencePiece with a "▁"
// normalizer and byte fallback) plus tokenizer_config.json (BOS/EOS policy, chat template).
// Unicode normalizers (NFC, Qwen2) are accepted but not applied: text already in NFC, which is
// nearly all text, tokenizes the same.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "core/input_file.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer_files.h"

namespace elutq {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

json read_json(const fs::path& p) {
  const std::string text = read_input_file(p.string(), "tokenizer");
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("'", p.string(), "' is not valid JSON: ", e.what());
  }
}

// The member `key` of object j, or an Error naming the file.
const json& member(const json& j, const char* key, const std::string& file, const char* where) {
  require(j.is_object() && j.contains(key), "'", file, "': ", where, " has no \"", key, "\"");
  return j.at(key);
}

std::string as_string(const json& j, const std::string& file, const char* what) {
  require(j.is_string(), "'", file, "': ", what, " must be a string");
  return j.get<std::string>();
}

// "<|x|>" or {"content": "<|x|>", ...} -> the token text; null -> "".
std::string token_text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"];
  return "";
}

// Quotes text for use as a literal inside a PCRE2 pattern.
std::string regex_literal(const std::string& s) { return "\\Q" + s + "\\E"; }

// The pre-tokenizer of a byte-level tokenizer.json as PCRE2 regexes; sets *byte_level when a
// ByteLevel step is present.
void collect_pre(const json& pt, const std::string& file, std::vector<std::string>& rx,
                 bool* byte_level) {
  if (pt.is_null()) return;
  const std::string type = as_string(member(pt, "type", file, "pre_tokenizer"), file,
                                     "pre_tokenizer.type");
  if (type == "Sequence") {
    for (const json& p : member(pt, "pretokenizers", file, "pre_tokenizer Sequence")) {
      collect_pre(p, file, rx, byte_level);
    }
  } else if (type == "ByteLevel") {
    *byte_level = true;
    require(!pt.value("add_prefix_space", false), "'", file,
            "': ByteLevel add_prefix_space=true is not supported");
    if (pt.value("use_regex", true)) {
      auto gpt2 = PreTokenizer::regexes_for("gpt2");
      rx.insert(rx.end(), gpt2.begin(), gpt2.end());
    }
  } else if (type == "Split") {
    const json& pat = member(pt, "pattern", file, "Split pre-tokenizer");
    const std::string behavior = pt.value("behavior", "Isolated");
    require(behavior == "Isolated" && !pt.value("invert", false), "'", file,
            "': Split pre-tokenizer with behavior '", behavior,
            "' (or invert) is not supported; only Isolated");
    if (pat.contains("Regex")) {
      rx.push_back(as_string(pat["Regex"], file, "Split pattern.Regex"));
    } else {
      rx.push_back(regex_literal(as_string(member(pat, "String", file, "Split pattern"), file,
                                           "Split pattern.String")));
    }
  } else if (type == "Digits") {
    rx.push_back(pt.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
  } else {
    fail("'", file, "': pre-tokenizer '", type,
         "' is not supported (supported: ByteLevel, Split, Digits, Metaspace, Sequence)");
  }
}

// LLaMA-2-style normalizer: Prepend("▁") and Replace(" ", "▁"). Returns true if it is that kind.
bool spm_normalizer(const json& n, bool* prepend) {
  if (n.is_null()) return false;
  bool replace = false;
  auto visit = [&](const json& s) {
    const std::string t = s.value("type", "");
    if (t == "Prepend") *prepend = true;
    if (t == "Replace" && token_text(s.value("content", json())) == "\xE2\x96\x81") replace = true;
  };
  if (n.value("type", "") == "Sequence" && n.contains("normalizers")) {
    for (const json& s : n["normalizers"]) visit(s);
  } else {
    visit(n);
  }
  return replace;
}

// BOS/EOS the post-processor adds around a single sequence (TemplateProcessing).
void template_specials(const json& pp, std::vector<std::string>* before,
                       std::vector<std::string>* after) {
  if (pp.is_null() || !pp.is_object()) return;
  const std::string type = pp.value("type", "");
  if (type == "Sequence" && pp.contains("processors")) {
    for (const json& p : pp["processors"]) template_specials(p, before, after);
    return;
  }
  if (type != "TemplateProcessing" || !pp.contains("single")) return;
  bool seen_seq = false;
  for (const json& item : pp["single"]) {
    if (item.contains("Sequence")) {
      seen_seq = true;
    } else if (item.contains("SpecialToken")) {
      const std::string id = item["SpecialToken"].value("id", "");
      (seen_seq ? after : before)->push_back(id);
    }
  }
}

// tokenizer.json's contents (and tokenizer_config.json, read from dir) -> the spec. A value of a
// type it does not check for throws json::exception, which load_hf_tokenizer turns into an Error.
TokenizerSpec spec_from_json(const fs::path& dir, const fs::path& tj_path, const json& tj) {
  const std::string file = tj_path.string();
  require(tj.is_object(), "'", file, "' must hold a JSON object");
  const json& model = member(tj, "model", file, "the file");
  const std::string model_type = model.value("type", "BPE");
  require(model_type == "BPE", "'", file, "': tokenizer model '", model_type,
          "' is not supported; only BPE");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    require(!model.contains(k) || model[k].is_null() || model[k] == "", "'", file, "': BPE ", k,
            " is not supported");
  }

  TokenizerSpec spec;
  // Vocabulary: piece -> id, plus added tokens (which may extend it).
  const json& vocab = member(model, "vocab", file, "model");
  require(vocab.is_object(), "'", file, "': model.vocab must be an object");
  std::vector<std::string> tokens(vocab.size());
  std::vector<bool> filled(vocab.size(), false);
  std::vector<TokenType> types(vocab.size(), TokenType::Normal);
  // Ids run from 0 without gaps, so none can reach the number of vocabulary entries plus added
  // tokens: a larger one is refused before it sizes anything (a 66-byte file used to allocate
  // 16M token strings).
  static const json kNone;
  const auto added_it = tj.find("added_tokens");
  const json& added = added_it == tj.end() ? kNone : *added_it;
  const int64_t n_entries = int64_t(vocab.size()) + int64_t(added.is_null() ? 0 : added.size());
  const int64_t max_id = std::min<int64_t>(n_entries, 1 << 24) - 1;
  auto put = [&](const std::string& piece, int64_t id, TokenType type) {
    require(id >= 0 && id <= max_id, "'", file, "': token '", piece, "' has id ", id,
            " outside 0..", max_id, " (ids count from 0 without gaps over the ", vocab.size(),
            " vocabulary entries and the added tokens, at most 16777216)");
    if (static_cast<size_t>(id) >= tokens.size()) {
      tokens.resize(id + 1);
      filled.resize(id + 1, false);
      types.resize(id + 1, TokenType::Normal);
    }
    tokens[id] = piece;
    filled[id] = true;
    types[id] = type;
  };
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    require(it.value().is_number_integer(), "'", file, "': vocab entry '", it.key(),
            "' must map to an integer id");
    put(it.key(), it.value().get<int64_t>(), TokenType::Normal);
  }
  std::vector<std::string> added_special;
  if (!added.is_null()) {
    for (const json& a : added) {
      const std::string content = as_string(member(a, "content", file, "an added token"), file,
                                            "added_tokens[].content");
      const json& id = member(a, "id", file, "an added token");
      require(id.is_number_integer(), "'", file, "': added token '", content, "' has no integer id");
      const bool special = a.value("special", false);
      put(content, id.get<int64_t>(), special ? TokenType::Control : TokenType::UserDefined);
      if (special) added_special.push_back(content);
    }
  }
  for (size_t i = 0; i < filled.size(); ++i) {
    require(filled[i], "'", file, "': no token has id ", i, " (ids must be 0..",
            filled.size() - 1, " without gaps)");
  }
  spec.tokens = std::move(tokens);
  spec.types = std::move(types);
  std::unordered_map<std::string, int> id_of;  // piece -> lowest id
  for (size_t i = spec.tokens.size(); i-- > 0;) id_of[spec.tokens[i]] = static_cast<int>(i);
  auto find_id = [&](const std::string& piece) -> int {
    auto it = id_of.find(piece);
    return piece.empty() || it == id_of.end() ? -1 : it->second;
  };

  // Merges: "a b" strings or [a, b] pairs, highest priority first.
  const json& merges = member(model, "merges", file, "model");
  require(merges.is_array(), "'", file, "': model.merges must be an array");
  spec.merges.reserve(merges.size());
  for (const json& m : merges) {
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ', 1);
      require(sp != std::string::npos, "'", file, "': merge '", s, "' is not two tokens");
      spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else {
      require(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), "'", file,
              "': a merge must be \"a b\" or [\"a\", \"b\"]");
      spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    }
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    spec.unk_id = find_id(model["unk_token"]);
    if (spec.unk_id >= 0) spec.types[spec.unk_id] = TokenType::Unknown;
  }

  // Which BPE variant: a ByteLevel step anywhere means byte-level; "▁" normalizer or Metaspace
  // means SentencePiece style.
  bool byte_level = false;
  const json pre = tj.value("pre_tokenizer", json());
  bool prepend = false;
  bool spm = spm_normalizer(tj.value("normalizer", json()), &prepend);
  if (!pre.is_null() && pre.value("type", "") == "Metaspace") {
    spm = true;
    prepend = pre.value("prepend_scheme", std::string("always")) != "never" &&
              pre.value("add_prefix_space", true);
  } else {
    collect_pre(pre, file, spec.pre_regexes, &byte_level);
  }
  if (byte_level) {
    spec.kind = TokenizerKind::ByteLevelBPE;
    spec.ignore_merges = model.value("ignore_merges", false);
    if (spec.pre_regexes.empty()) spec.pre_regexes = PreTokenizer::regexes_for("gpt2");
    spec.pre = "tokenizer.json";
  } else if (spm) {
    spec.kind = TokenizerKind::SentencePieceBPE;
    spec.add_space_prefix = prepend;
    if (model.value("byte_fallback", false)) {
      for (size_t i = 0; i < spec.tokens.size(); ++i) {
        const std::string& t = spec.tokens[i];
        if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') spec.types[i] = TokenType::Byte;
      }
    }
    // Scores from merge ranks: the piece the first merge makes scores highest.
    spec.scores.assign(spec.tokens.size(), -1e30f);
    std::string joined;
    for (size_t r = spec.merges.size(); r-- > 0;) {
      joined = spec.merges[r].first + spec.merges[r].second;
      const int id = find_id(joined);
      if (id >= 0) spec.scores[id] = -static_cast<float>(r);
    }
  } else {
    fail("'", file, "': neither a byte-level (ByteLevel pre-tokenizer) nor a SentencePiece-style "
         "(\"▁\" normalizer or Metaspace) BPE tokenizer; not supported");
  }

  // BOS/EOS: the post-processor's template, then tokenizer_config.json, which wins.
  std::vector<std::string> before, after;
  template_specials(tj.value("post_processor", json()), &before, &after);
  if (!before.empty()) spec.bos_id = find_id(before.front());
  if (!after.empty()) spec.eos_id = find_id(after.back());
  spec.add_bos = !before.empty() && spec.bos_id >= 0;
  spec.add_eos = !after.empty() && spec.eos_id >= 0;
  const fs::path cfg_path = dir / "tokenizer_config.json";
  if (fs::exists(cfg_path)) {
    const std::string cfile = cfg_path.string();
    const json cfg = read_json(cfg_path);
    require(cfg.is_object(), "'", cfile, "' must hold a JSON object");
    auto special_id = [&](const char* key, int fallback) {
      if (!cfg.contains(key) || cfg[key].is_null()) return fallback;
      const std::string text = token_text(cfg[key]);
      const int id = find_id(text);
      require(id >= 0, "'", cfile, "': ", key, " '", text, "' is not in the vocabulary");
      return id;
    };
    spec.bos_id = special_id("bos_token", spec.bos_id);
    spec.eos_id = special_id("eos_token", spec.eos_id);
    spec.pad_id = special_id("pad_token", spec.pad_id);
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
      spec.add_bos = cfg["add_bos_token"].get<bool>() && spec.bos_id >= 0;
    }
    if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) {
      spec.add_eos = cfg["add_eos_token"].get<bool>() && spec.eos_id >= 0;
    }
    if (cfg.contains("chat_template")) {
      const json& ct = cfg["chat_template"];
      if (ct.is_string()) {
        spec.chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {  // [{"name": ..., "template": ...}], "default" preferred
        for (const json& t : ct) {
          if (t.value("name", "") == "default" || spec.chat_template.empty()) {
            spec.chat_template = t.value("template", "");
          }
        }
      }
    }
  }
  if (spec.eos_id < 0) {
    for (const char* name : {"</s>", "<|endoftext|>", "<|end_of_text|>"}) {
      if ((spec.eos_id = find_id(name)) >= 0) break;
    }
  }
  if (spec.eos_id >= 0) spec.stop_ids.push_back(spec.eos_id);
  for (const char* name : {"<|eot_id|>", "<|im_end|>", "<|eom_id|>", "<end_of_turn>",
                           "<|endoftext|>", "<|end_of_text|>"}) {
    const int id = find_id(name);
    if (id >= 0 && id != spec.eos_id) spec.stop_ids.push_back(id);
  }
  return spec;
}

}  // namespace

TokenizerSpec load_hf_tokenizer(const std::string& folder) {
  const fs::path dir(folder);
  const fs::path tj_path = dir / "tokenizer.json";
  require(fs::exists(tj_path), "'", folder, "' has no tokenizer.json");
  const json tj = read_json(tj_path);
  try {
    return spec_from_json(dir, tj_path, tj);
  } catch (const json::exception& e) {  // a value of a type the checks did not expect
    fail("'", tj_path.string(), "' (or its tokenizer_config.json): unexpected value (", e.what(),
         ")");
  }
}

}  // namespace elutq
