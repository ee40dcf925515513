// Resuming an interrupted block-by-block quantization. A run keeps a work directory beside its
// output (OUT.elutq-work/) holding:
//   manifest.txt        every input that affects the output bytes (source identity, method, bits,
//                       group, calibration data and sizes, threads, ...), one "key=value" a line
//   block-N.ckpt        block N's results once it is finished: its quantized tensors and any
//                       tensors it changed (AWQ-folded norms), plus free-form report notes
//   acts-N.bin          the calibration activations after block N (the inputs of block N + 1);
//                       only the newest is kept
// (the layouts of those two: quant/resume_checkpoint.h)
// Every file is written under a temporary name, fsync'd and renamed, and acts-N.bin is written
// before block-N.ckpt, so whatever instant the run dies at, the directory says exactly which
// blocks are done. A restart with the same manifest skips them (their tensors are replayed from
// the checkpoints) and produces the same output file byte for byte; a restart with a different
// manifest is refused with a message naming the first difference. The directory is removed once
// the output file is in place.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "quant/resume_checkpoint.h"

namespace elutq {

class ActivationStore;

// Ordered "key=value" pairs describing a run. Keys and values must not contain newlines.
class RunManifest {
 public:
  void set(const std::string& key, const std::string& value);
  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }
  std::string text() const;
  // Throws Error on a line that is not key=value.
  static RunManifest parse(const std::string& text, const std::string& where);
  // "" if equal; otherwise a sentence naming the first key whose value differs (or is missing).
  std::string difference_from(const RunManifest& saved) const;

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

// "PATH size=N mtime=T" for a file, or for each regular file of a folder (sorted), so that a
// changed or replaced source is noticed. Throws Error if the path does not exist.
std::string file_identity(const std::string& path);

class ResumeDir {
 public:
  // OUT + ".elutq-work".
  static std::string dir_for(const std::string& out_path);
  // Removes a work directory left by an earlier run (for a forced fresh start).
  static void discard(const std::string& out_path);

  // Opens the work directory of out_path, creating it with this manifest if absent. If it exists
  // with another manifest, throws Error naming the difference and how to start over.
  ResumeDir(const std::string& out_path, const RunManifest& manifest, int n_blocks);

  const std::string& path() const { return dir_; }
  // Blocks 0 .. finished_blocks() - 1 are done: their checkpoints and the activations after the
  // last of them are on disk. 0 for a fresh run.
  int finished_blocks() const { return finished_; }
  bool resumed() const { return finished_ > 0; }

  // Records block `layer` (which must be finished_blocks()) as done. acts must hold the block's
  // outputs (the next block's inputs); null if the run keeps no activations.
  void save_block(int layer, const BlockCheckpoint& cp, const ActivationStore* acts);
  BlockCheckpoint load_block(int layer) const;
  // The activations after the last finished block into acts.
  void load_activations(ActivationStore& acts) const;
  // Deletes the directory (after the output file is in place).
  void remove();

 private:
  std::string block_path(int layer) const;
  std::string acts_path(int layer) const;

  std::string dir_;
  int n_blocks_ = 0;
  int finished_ = 0;
};

}  // namespace elutq
