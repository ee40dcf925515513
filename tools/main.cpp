// elutq: quantize LLaMA-family models and run them fast on CPUs. Dispatches to the verbs.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "cli.h"
#include "core/error.h"

namespace elutq::cli {
namespace {

std::map<std::string, Verb>& verbs() {
  static std::map<std::string, Verb> v;
  return v;
}

void print_usage() {
  std::printf(
      "elutq - make large language models small and fast on ordinary CPUs\n\n"
      "usage: elutq <command> [options]     (elutq <command> --help for its options)\n\n"
      "commands:\n");
  for (const auto& [name, verb] : verbs()) std::printf("  %-12s %s\n", name.c_str(), verb.summary);
  std::printf("\nexample: elutq generate -m model.gguf -p \"Once upon a time\" -n 64\n");
}

}  // namespace

VerbRegistrar::VerbRegistrar(const Verb& verb) { verbs()[verb.name] = verb; }

bool parse(CLI::App& app, int argc, char** argv, int* exit_code) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", app.help().c_str());
    *exit_code = 0;
    return false;
  } catch (const CLI::ExtrasError&) {
    // CLI11's own message lists the extras last-first ("bar --foo"); say them as typed.
    std::string extras;
    for (const std::string& a : app.remaining()) extras += (extras.empty() ? "" : " ") + a;
    std::fprintf(stderr, "elutq: error: unexpected arguments: %s (see '%s --help')\n",
                 elutq::Error::printable_text(extras).c_str(), app.get_name().c_str());
    *exit_code = 2;
    return false;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "elutq: error: %s (see '%s --help')\n",
                 elutq::Error::printable_text(e.what()).c_str(), app.get_name().c_str());
    *exit_code = 2;
    return false;
  }
  return true;
}

}  // namespace elutq::cli

int main(int argc, char** argv) {
  using namespace elutq::cli;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  auto it = verbs().find(argv[1]);
  if (it == verbs().end()) {
    std::fprintf(stderr, "elutq: error: unknown command '%s'; run 'elutq --help' for the list\n",
                 argv[1]);
    return 2;
  }
  std::string name = std::string("elutq ") + argv[1];
  std::vector<char*> args(argv + 1, argv + argc);
  args[0] = name.data();
  try {
    return it->second.run(static_cast<int>(args.size()), args.data());
  } catch (const elutq::Error& e) {
    std::fprintf(stderr, "elutq: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "elutq: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "elutq: error: %s\n", elutq::Error::printable_text(e.what()).c_str());
    return 1;
  }
}
