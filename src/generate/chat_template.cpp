// Built-in chat formats and recognition of models' Jinja templates.
#include "generate/chat_template.h"

#include "core/error.h"

namespace elutq {
namespace {

constexpr const char* kChoices = "chatml, llama2, llama3 or zephyr";

void check_role(const ChatMessage& m) {
  require(m.role == "system" || m.role == "user" || m.role == "assistant", "chat message role '",
          m.role, "' is not supported; use system, user or assistant");
}

// Strips ASCII whitespace at both ends (Jinja's trim filter, which Llama-3 templates apply).
std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// Undoes the escapes a Jinja string literal may carry (\n, \t, \', \", \\).
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The system prompt a ChatML template writes when the conversation has none: the literal text
// after "<|im_start|>system\n" up to "<|im_end|>", if the template spells one out.
std::string chatml_default_system(const std::string& j) {
  for (const char* open : {"<|im_start|>system\\n", "<|im_start|>system\n"}) {
    size_t p = j.find(open);
    while (p != std::string::npos) {
      const size_t b = p + std::string(open).size();
      const size_t e = j.find("<|im_end|>", b);
      if (e == std::string::npos) break;
      const std::string text = j.substr(b, e - b);
      // A literal prompt, not an expression splicing in a message.
      if (text.find_first_of("'\"{}+") == std::string::npos) return unescape(text);
      p = j.find(open, b);
    }
  }
  return "";
}

// Builds a ChatPrompt: markup (template text, roles, BOS/EOS) and contents (message texts).
class PromptBuilder {
 public:
  PromptBuilder& markup(const std::string& s) {
    p_.text += s;
    return *this;
  }
  PromptBuilder& content(const std::string& s) {
    if (!s.empty()) p_.contents.push_back({p_.text.size(), p_.text.size() + s.size()});
    p_.text += s;
    return *this;
  }
  ChatPrompt take() { return std::move(p_); }

 private:
  ChatPrompt p_;
};

ChatPrompt render_chatml(const ChatTemplate& t, const std::vector<ChatMessage>& ms, bool gen) {
  PromptBuilder b;
  if (!t.default_system.empty() && (ms.empty() || ms[0].role != "system"))
    b.markup("<|im_start|>system\n").content(t.default_system).markup("<|im_end|>\n");
  for (const auto& m : ms)
    b.markup("<|im_start|>" + m.role + "\n").content(m.content).markup("<|im_end|>\n");
  if (gen) b.markup("<|im_start|>assistant\n");
  return b.take();
}

ChatPrompt render_llama3(const ChatTemplate& t, const std::vector<ChatMessage>& ms, bool gen) {
  PromptBuilder b;
  b.markup(t.bos_token);
  if (!t.default_system.empty() && (ms.empty() || ms[0].role != "system"))
    b.markup("<|start_header_id|>system<|end_header_id|>\n\n")
        .content(t.default_system)
        .markup("<|eot_id|>");
  for (const auto& m : ms)
    b.markup("<|start_header_id|>" + m.role + "<|end_header_id|>\n\n")
        .content(trim(m.content))
        .markup("<|eot_id|>");
  if (gen) b.markup("<|start_header_id|>assistant<|end_header_id|>\n\n");
  return b.take();
}

// Llama-2 / Mistral: [INST] turns; a system prompt is folded into the first user turn.
ChatPrompt render_llama2(const ChatTemplate& t, const std::vector<ChatMessage>& ms, bool) {
  PromptBuilder b;
  std::string system = t.default_system;
  size_t first = 0;
  if (!ms.empty() && ms[0].role == "system") {
    system = ms[0].content;
    first = 1;
  }
  for (size_t i = first; i < ms.size(); ++i) {
    const bool user = (i - first) % 2 == 0;
    require(ms[i].role == (user ? "user" : "assistant"),
            "the llama2 chat format needs user and assistant turns to alternate, starting with user"
            " (message ", i, " is '", ms[i].role, "')");
    if (user) {
      b.markup(t.bos_token + "[INST] ");
      if (i == first && !system.empty())
        b.markup("<<SYS>>\n").content(trim(system)).markup("\n<</SYS>>\n\n");
      b.content(trim(ms[i].content)).markup(" [/INST]");
    } else {
      b.markup(" ").content(trim(ms[i].content)).markup(" " + t.eos_token);
    }
  }
  return b.take();  // the generation prompt is the open [/INST] itself
}

ChatPrompt render_zephyr(const ChatTemplate& t, const std::vector<ChatMessage>& ms, bool gen) {
  PromptBuilder b;
  if (!t.default_system.empty() && (ms.empty() || ms[0].role != "system"))
    b.markup("<|system|>\n").content(t.default_system).markup(t.eos_token + "\n");
  for (const auto& m : ms)
    b.markup("<|" + m.role + "|>\n").content(m.content).markup(t.eos_token + "\n");
  if (gen) b.markup("<|assistant|>\n");
  return b.take();
}

}  // namespace

ChatFormat chat_format_from_name(const std::string& name) {
  if (name == "chatml") return ChatFormat::ChatML;
  if (name == "llama2") return ChatFormat::Llama2;
  if (name == "llama3") return ChatFormat::Llama3;
  if (name == "zephyr") return ChatFormat::Zephyr;
  fail("unknown chat template '", name, "'; choose ", kChoices);
}

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML: return "chatml";
    case ChatFormat::Llama2: return "llama2";
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::Zephyr: return "zephyr";
  }
  return "?";
}

ChatTemplate chat_template_from_jinja(const std::string& j, const std::string& bos,
                                      const std::string& eos) {
  require(!j.empty(), "the model carries no chat template; pick one with --chat-template ",
          kChoices);
  ChatTemplate t;
  t.bos_token = bos;
  t.eos_token = eos;
  if (j.find("<|im_start|>") != std::string::npos) {
    t.format = ChatFormat::ChatML;
    t.default_system = chatml_default_system(j);
  } else if (j.find("<|start_header_id|>") != std::string::npos) {
    t.format = ChatFormat::Llama3;
  } else if (j.find("<|user|>") != std::string::npos) {
    t.format = ChatFormat::Zephyr;
  } else if (j.find("[INST]") != std::string::npos) {
    t.format = ChatFormat::Llama2;
  } else {
    fail("the model's chat template is not one elutq can render yet; pick a built-in with "
         "--chat-template ", kChoices);
  }
  return t;
}

ChatPrompt render_chat_prompt(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt) {
  for (const auto& m : messages) check_role(m);
  switch (t.format) {
    case ChatFormat::ChatML: return render_chatml(t, messages, add_generation_prompt);
    case ChatFormat::Llama2: return render_llama2(t, messages, add_generation_prompt);
    case ChatFormat::Llama3: return render_llama3(t, messages, add_generation_prompt);
    case ChatFormat::Zephyr: return render_zephyr(t, messages, add_generation_prompt);
  }
  fail("unknown chat format");
}

std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
  return render_chat_prompt(t, messages, add_generation_prompt).text;
}

std::vector<int> encode_chat_prompt(const Tokenizer& tok, const ChatPrompt& prompt) {
  return tok.encode_with_plain_ranges(prompt.text, /*add_special=*/false, prompt.contents);
}

std::vector<int> chat_prompt_ids(const Tokenizer& tok, const ChatPrompt& prompt) {
  std::vector<int> ids = encode_chat_prompt(tok, prompt);
  const TokenizerSpec& spec = tok.spec();
  if (spec.add_bos && spec.bos_id >= 0 && (ids.empty() || ids[0] != spec.bos_id))
    ids.insert(ids.begin(), spec.bos_id);
  return ids;
}

ChatTemplate chat_template_for(const TokenizerSpec& spec, const std::string& builtin_name) {
  const auto text_of = [&](int id) {
    return id >= 0 && size_t(id) < spec.tokens.size() ? spec.tokens[size_t(id)] : std::string();
  };
  const std::string bos = text_of(spec.bos_id), eos = text_of(spec.eos_id);
  if (builtin_name.empty()) return chat_template_from_jinja(spec.chat_template, bos, eos);
  return ChatTemplate{chat_format_from_name(builtin_name), "", bos, eos};
}

}  // namespace elutq
