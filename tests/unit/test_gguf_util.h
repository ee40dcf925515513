// Test helper: builds GGUF files byte by byte (well-formed or deliberately broken), independent
// of elutq's own writer, so reader tests do not depend on the code under test.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace elutq::test {

class GgufBytes {
 public:
  uint32_t version = 3;
  uint64_t alignment = 32;  // used for padding only; add general.alignment yourself to change it

  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;  // innermost first, as GGUF stores them
    uint32_t type = 0;
    std::string data;
    int64_t offset_override = -1;  // write this offset instead of the real one
  };
  std::vector<Tensor> tensors;

  static void put_u32(std::string& o, uint32_t v) { o.append(reinterpret_cast<char*>(&v), 4); }
  static void put_u64(std::string& o, uint64_t v) { o.append(reinterpret_cast<char*>(&v), 8); }
  static void put_str(std::string& o, const std::string& s) {
    put_u64(o, s.size());
    o += s;
  }

  void raw_kv(const std::string& key, uint32_t type, const std::string& value) {
    put_str(kv_, key);
    put_u32(kv_, type);
    kv_ += value;
    ++n_kv_;
  }
  void kv_u32(const std::string& key, uint32_t v) {
    std::string s;
    put_u32(s, v);
    raw_kv(key, 4, s);
  }
  void kv_i32(const std::string& key, int32_t v) { kv_u32_typed(key, 5, static_cast<uint32_t>(v)); }
  void kv_f32(const std::string& key, float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    kv_u32_typed(key, 6, u);
  }
  void kv_bool(const std::string& key, bool v) { raw_kv(key, 7, std::string(1, v ? 1 : 0)); }
  void kv_string(const std::string& key, const std::string& v) {
    std::string s;
    put_str(s, v);
    raw_kv(key, 8, s);
  }
  void kv_u64(const std::string& key, uint64_t v) {
    std::string s;
    put_u64(s, v);
    raw_kv(key, 10, s);
  }
  void kv_str_array(const std::string& key, const std::vector<std::string>& v) {
    std::string s;
    put_u32(s, 8);
    put_u64(s, v.size());
    for (const auto& x : v) put_str(s, x);
    raw_kv(key, 9, s);
  }
  void kv_f32_array(const std::string& key, const std::vector<float>& v) {
    std::string s;
    put_u32(s, 6);
    put_u64(s, v.size());
    s.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
    raw_kv(key, 9, s);
  }
  void kv_i32_array(const std::string& key, const std::vector<int32_t>& v) {
    std::string s;
    put_u32(s, 5);
    put_u64(s, v.size());
    s.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
    raw_kv(key, 9, s);
  }

  void add_f32(const std::string& name, std::vector<uint64_t> dims, const std::vector<float>& v) {
    tensors.push_back({name, std::move(dims), 0,
                       std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4)});
  }
  void add_raw(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
               const std::string& bytes) {
    tensors.push_back({name, std::move(dims), type, bytes});
  }

  std::string build() const {
    std::string o = "GGUF";
    put_u32(o, version);
    put_u64(o, tensors.size());
    put_u64(o, n_kv_);
    o += kv_;
    uint64_t off = 0;
    std::vector<uint64_t> offsets;
    for (const auto& t : tensors) {
      offsets.push_back(off);
      off += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      put_str(o, t.name);
      put_u32(o, static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) put_u64(o, d);
      put_u32(o, t.type);
      put_u64(o, t.offset_override >= 0 ? static_cast<uint64_t>(t.offset_override) : offsets[i]);
    }
    o.resize((o.size() + alignment - 1) / alignment * alignment, '\0');
    for (const auto& t : tensors) {
      o += t.data;
      o.resize((o.size() + alignment - 1) / alignment * alignment, '\0');
    }
    return o;
  }

  void write(const std::string& path) const {
    const std::string b = build();
    std::ofstream(path, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
  }

 private:
  void kv_u32_typed(const std::string& key, uint32_t type, uint32_t bits) {
    std::string s;
    put_u32(s, bits);
    raw_kv(key, type, s);
  }
  std::string kv_;
  uint64_t n_kv_ = 0;
};

}  // namespace elutq::test
