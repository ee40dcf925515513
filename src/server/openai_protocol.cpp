// OpenAI request parsing and response JSON; see openai_protocol.h.
#include "server/openai_protocol.h"

#include <nlohmann/json.hpp>

namespace elutq {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, "invalid_request_error", message, param);
}

// The field's number if present (null counts as absent); 400 if it is not a number or outside
// [lo, hi].
std::optional<double> number(const json& j, const char* key, double lo, double hi) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_number()) bad(key, std::string("'") + key + "' must be a number");
  const double v = j[key].get<double>();
  if (!(v >= lo && v <= hi))
    bad(key, std::string("'") + key + "' must be between " + json(lo).dump() + " and " +
                 json(hi).dump() + ", got " + json(v).dump());
  return v;
}

std::optional<int64_t> integer(const json& j, const char* key, int64_t lo, int64_t hi) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_number_integer() && !j[key].is_number_unsigned())
    bad(key, std::string("'") + key + "' must be an integer");
  if (j[key].is_number_unsigned() && j[key].get<uint64_t>() > uint64_t(INT64_MAX))
    bad(key, std::string("'") + key + "' is out of range");
  const int64_t v = j[key].get<int64_t>();
  if (v < lo || v > hi)
    bad(key, std::string("'") + key + "' must be between " + std::to_string(lo) + " and " +
                 std::to_string(hi) + ", got " + std::to_string(v));
  return v;
}

bool boolean(const json& j, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) bad(key, std::string("'") + key + "' must be true or false");
  return j[key].get<bool>();
}

// A message's content: a string, or OpenAI's list of parts of which only text parts are read.
std::string message_content(const json& c, size_t i) {
  const std::string param = "messages[" + std::to_string(i) + "].content";
  if (c.is_string()) return c.get<std::string>();
  if (c.is_null()) return "";
  if (!c.is_array()) bad(param, "'" + param + "' must be a string or a list of text parts");
  std::string text;
  for (const json& part : c) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
        !part["text"].is_string())
      bad(param, "'" + param + "' parts must be {\"type\": \"text\", \"text\": \"...\"} (this "
                 "server reads text only)");
    text += part["text"].get<std::string>();
  }
  return text;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

}  // namespace

std::string error_json(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type}, {"code", nullptr}};
  err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
  return json{{"error", err}}.dump();
}

CompletionRequest parse_completion_request(const std::string& body, bool chat) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    bad("", std::string("the request body is not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) bad("", "the request body must be a JSON object");
  CompletionRequest r;
  r.chat = chat;
  if (j.contains("model")) {
    if (!j["model"].is_string()) bad("model", "'model' must be a string");
    r.model = j["model"].get<std::string>();
  }
  if (chat) {
    if (!j.contains("messages")) bad("messages", "'messages' is required");
    const json& ms = j["messages"];
    if (!ms.is_array() || ms.empty()) bad("messages", "'messages' must be a non-empty list");
    for (size_t i = 0; i < ms.size(); ++i) {
      const json& m = ms[i];
      const std::string at = "messages[" + std::to_string(i) + "]";
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
        bad(at, "'" + at + "' must be an object with a string 'role'");
      std::string role = m["role"].get<std::string>();
      if (role == "developer") role = "system";  // OpenAI's newer name for it
      if (role != "system" && role != "user" && role != "assistant")
        bad(at + ".role", "'" + at + ".role' must be system, user or assistant, got '" + role +
                              "'");
      r.messages.push_back({role, message_content(m.contains("content") ? m["content"] : json(), i)});
    }
  } else {
    if (!j.contains("prompt")) bad("prompt", "'prompt' is required");
    const json& p = j["prompt"];
    if (p.is_string()) {
      r.prompt = p.get<std::string>();
    } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
      r.prompt = p[0].get<std::string>();
    } else {
      bad("prompt", "'prompt' must be a string (or a list of one string)");
    }
  }
  r.stream = boolean(j, "stream", false);
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    if (!j["stream_options"].is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(j["stream_options"], "include_usage", false);
  }
  // max_completion_tokens is the chat API's newer name for max_tokens.
  if (auto v = integer(j, "max_tokens", 1, 1 << 20)) r.max_tokens = int(*v);
  if (auto v = integer(j, "max_completion_tokens", 1, 1 << 20)) r.max_tokens = int(*v);
  if (j.contains("n") && !j["n"].is_null() && integer(j, "n", 1, 1) != 1)
    bad("n", "'n' must be 1 (one choice per request)");
  r.sampling.temperature = float(number(j, "temperature", 0, 2).value_or(1.0));
  r.sampling.top_p = float(number(j, "top_p", 0, 1).value_or(1.0));
  r.sampling.top_k = int(integer(j, "top_k", 0, 1 << 20).value_or(0));
  r.sampling.min_p = float(number(j, "min_p", 0, 1).value_or(0.0));
  r.sampling.repeat_penalty = 1.0f;
  if (auto v = integer(j, "seed", INT64_MIN, INT64_MAX)) r.seed = uint64_t(*v);
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& s = j["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array() && s.size() <= 4) {
      for (const json& x : s) {
        if (!x.is_string()) bad("stop", "'stop' must be a string or a list of up to 4 strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or a list of up to 4 strings");
    }
    for (const std::string& x : r.stop)
      if (x.empty()) bad("stop", "'stop' strings must not be empty");
  }
  return r;
}

std::string completion_json(const CompletionRequest& req, const std::string& id, int64_t created,
                            const CompletionResult& r) {
  json choice = {{"index", 0}, {"finish_reason", r.finish_reason}, {"logprobs", nullptr}};
  if (req.chat)
    choice["message"] = {{"role", "assistant"}, {"content", r.text}};
  else
    choice["text"] = r.text;
  return json{{"id", id},
              {"object", req.chat ? "chat.completion" : "text_completion"},
              {"created", created},
              {"model", req.model},
              {"choices", json::array({choice})},
              {"usage", usage_json(r.usage)}}
      .dump();
}

std::string chunk_json(const CompletionRequest& req, const std::string& id, int64_t created,
                       const std::string& delta, bool first, const std::string& finish,
                       const Usage* usage) {
  json out = {{"id", id},
              {"object", req.chat ? "chat.completion.chunk" : "text_completion"},
              {"created", created},
              {"model", req.model}};
  if (usage && delta.empty() && finish.empty()) {
    out["choices"] = json::array();
  } else {
    json choice = {{"index", 0}, {"logprobs", nullptr}};
    choice["finish_reason"] = finish.empty() ? json(nullptr) : json(finish);
    if (req.chat) {
      json d = json::object();
      if (first) d["role"] = "assistant";
      if (!delta.empty() || (first && finish.empty())) d["content"] = delta;
      choice["delta"] = d;
    } else {
      choice["text"] = delta;
    }
    out["choices"] = json::array({choice});
  }
  out["usage"] = usage ? usage_json(*usage) : json(nullptr);
  return out.dump();
}

std::string models_json(const std::string& model_id, int64_t created) {
  return json{{"object", "list"},
              {"data", json::array({{{"id", model_id},
                                     {"object", "model"},
                                     {"created", created},
                                     {"owned_by", "elutq"}}})}}
      .dump();
}

}  // namespace elutq
