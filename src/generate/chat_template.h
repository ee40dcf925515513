// Chat prompts: renders a conversation ({role, content} messages) into the text a chat model was
// trained on. Four built-in formats cover the LLaMA-family models we run; a model's own template
// string (TokenizerSpec.chat_template) is recognised by its marker tokens and mapped to one of them,
// keeping a default system prompt it embeds (SmolLM2, Qwen2/2.5).
//
// Not yet done: a general Jinja interpreter. A template that none of the built-ins matches is an
// Error naming the --chat-template choices.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace elutq {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

enum class ChatFormat { ChatML, Llama2, Llama3, Zephyr };

struct ChatTemplate {
  ChatFormat format = ChatFormat::ChatML;
  std::string default_system;  // used when the conversation has no system message ("" = none)
  std::string bos_token;       // text of the model's BOS token, for formats that write it
  std::string eos_token;       // text of the model's EOS token (Zephyr ends turns with it)
};

// "chatml", "llama2", "llama3", "zephyr" -> format; Error otherwise.
ChatFormat chat_format_from_name(const std::string& name);
const char* chat_format_name(ChatFormat f);

// Recognises a model's Jinja template string. Error (suggesting --chat-template) if it is empty or
// not one of the known families.
ChatTemplate chat_template_from_jinja(const std::string& jinja, const std::string& bos_token,
                                      const std::string& eos_token);

// A rendered conversation: its text, and where in it the messages' contents lie (system prompts
// included). Only the rest, the template's markup, may turn into special tokens.
struct ChatPrompt {
  std::string text;
  std::vector<Tokenizer::Range> contents;
};

// The prompt for messages; with add_generation_prompt it ends with the opening of an assistant
// turn. Error on an unknown role or, for Llama2, roles that do not alternate.
ChatPrompt render_chat_prompt(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt);
// render_chat_prompt(...).text.
std::string render_chat(const ChatTemplate& t, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

// The prompt's token ids: markup special-token text becomes its tokens, message contents are
// always plain text (a message cannot open a turn of another role). No BOS / EOS is added beyond
// what the template writes.
std::vector<int> encode_chat_prompt(const Tokenizer& tok, const ChatPrompt& prompt);

// What a model is given: encode_chat_prompt's ids with BOS in front when the model starts texts
// with one and the template did not write it.
std::vector<int> chat_prompt_ids(const Tokenizer& tok, const ChatPrompt& prompt);

// The chat format for a model with this tokenizer: the built-in one named (chatml, llama2,
// llama3, zephyr) if builtin_name is not empty, else the one its own template is recognised as;
// either way with the model's BOS and EOS texts. Throws Error as chat_template_from_jinja.
ChatTemplate chat_template_for(const TokenizerSpec& spec, const std::string& builtin_name);

}  // namespace elutq
