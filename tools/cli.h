// The CLI is `elutq <verb> [options]`. Each verb lives in its own tools/<verb>.cpp, parses its own
// options with CLI11 and registers itself with a static VerbRegistrar; main.cpp dispatches.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace elutq::cli {

struct Verb {
  const char* name;
  const char* summary;  // one line for `elutq --help`
  int (*run)(int argc, char** argv);  // argv[0] is "elutq <verb>"
};

struct VerbRegistrar {
  explicit VerbRegistrar(const Verb& verb);
};

// Parses argv with app; on --help prints help and returns 0 through *exit_code; on a bad argument
// prints one error line plus a hint and sets *exit_code to 2. Returns true if the verb should run.
bool parse(CLI::App& app, int argc, char** argv, int* exit_code);

}  // namespace elutq::cli
