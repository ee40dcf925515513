// `elutq tokenize`: text -> token ids (or ids -> text) with a model's tokenizer, a SentencePiece
// tokenizer.model or a Hugging Face tokenizer folder. Used by people checking prompts and by
// the parity tests against HF tokenizers / sentencepiece.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli.h"
#include "core/error.h"
#include "core/input_file.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_files.h"

namespace elutq::cli {
namespace {

std::string read_file(const std::string& path) {
  return read_input_file(path, "text file");
}

void print_ids(const std::vector<int>& ids) {
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
}

std::vector<int> parse_ids(const std::string& s) {
  std::vector<int> ids;
  std::istringstream in(s);
  std::string tok;
  while (in >> tok) {
    size_t used = 0;
    long v = -1;
    try {
      v = std::stol(tok, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    require(used == tok.size() && v >= 0 && v <= 0x7FFFFFFF, "--decode: '", tok,
            "' is not a token id (expected space-separated non-negative integers)");
    ids.push_back(static_cast<int>(v));
  }
  return ids;
}

int run_tokenize(int argc, char** argv) {
  CLI::App app(
      "Turn text into token ids (one line of space-separated ids) with a model's tokenizer, or "
      "ids back into text with --decode.",
      argv[0]);
  std::string model, spm, hf, prompt, file, decode_ids;
  bool lines = false, jsonl = false, no_bos = false, parse_special = false, roundtrip = false;
  int max_docs = -1;
  auto* m = app.add_option("-m,--model", model, "model whose tokenizer to use (GGUF file, HF folder or llama2.c .bin)");
  auto* s = app.add_option("--spm", spm, "a SentencePiece tokenizer.model instead of a model");
  auto* h = app.add_option("--hf-tokenizer", hf, "a folder with tokenizer.json (+ tokenizer_config.json) instead of a model");
  m->excludes(s, h);
  s->excludes(h);
  auto* p = app.add_option("-p,--prompt", prompt, "the text to tokenize");
  auto* f = app.add_option("-f,--file", file, "read the text from this file");
  auto* d = app.add_option("--decode", decode_ids, "decode these space-separated ids to text instead");
  p->excludes(f, d);
  f->excludes(d);
  app.add_flag("--lines", lines, "with -f: tokenize each line on its own, one output line per input line");
  app.add_flag("--jsonl", jsonl, "with -f: the file is JSON lines; tokenize each document's \"text\" field, one output line each");
  app.add_option("--max-docs", max_docs, "with --jsonl or --lines: stop after this many documents")->check(CLI::PositiveNumber);
  app.add_flag("--no-bos", no_bos, "do not add BOS/EOS even if the tokenizer's policy says so");
  app.add_flag("--parse-special", parse_special, "turn special-token text such as <|im_start|> into its id");
  app.add_flag("--check-roundtrip", roundtrip, "also decode each result and fail unless it gives back the input text exactly");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;

  require(!model.empty() || !spm.empty() || !hf.empty(),
          "give a tokenizer: -m MODEL, --spm tokenizer.model or --hf-tokenizer FOLDER");
  require(!prompt.empty() || !file.empty() || d->count() > 0,
          "give the text with -p TEXT or -f FILE (or ids with --decode)");
  require(!(lines && jsonl), "--lines and --jsonl cannot be combined");
  require(file.empty() ? !(lines || jsonl) : true, "--lines and --jsonl need -f FILE");

  TokenizerSpec spec;
  if (!spm.empty()) {
    spec = load_sentencepiece_model(spm);
  } else if (!hf.empty()) {
    spec = load_hf_tokenizer(hf);
  } else {
    spec = open_model(model)->tokenizer();
  }
  const Tokenizer tok(spec);

  if (d->count() > 0) {
    const std::string text = tok.decode(parse_ids(decode_ids));
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    return 0;
  }
  const bool add_special = !no_bos;
  // Encodes one document, prints its ids and, if asked, checks decode(encode(x)) == x.
  auto encode_one = [&](const std::string& doc, const std::string& where) {
    const std::vector<int> ids = tok.encode(doc, add_special, parse_special);
    print_ids(ids);
    if (roundtrip) {
      require(tok.decode(ids, parse_special) == doc, "decode(encode(x)) != x for ", where);
    }
  };
  if (!prompt.empty()) {
    encode_one(prompt, "the prompt");
    return 0;
  }
  const std::string text = read_file(file);
  if (!lines && !jsonl) {
    require(!text.empty(), "text file '", file, "' is empty");
    encode_one(text, "'" + file + "'");
    return 0;
  }
  std::istringstream in(text);
  std::string line;
  int docs = 0;
  long line_no = 0;
  while ((max_docs < 0 || docs < max_docs) && std::getline(in, line)) {
    ++line_no;
    if (jsonl) {
      if (line.empty()) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail("'", file, "' line ", line_no, " is not valid JSON: ", e.what());
      }
      require(j.is_object() && j.contains("text") && j["text"].is_string(), "'", file, "' line ",
              line_no, " has no string \"text\" field");
      encode_one(j["text"].get<std::string>(), "line " + std::to_string(line_no));
    } else {
      encode_one(line, "line " + std::to_string(line_no));
    }
    ++docs;
  }
  return 0;
}

const VerbRegistrar reg({"tokenize", "text -> token ids (or --decode ids -> text) with a model's tokenizer",
                         run_tokenize});

}  // namespace
}  // namespace elutq::cli
