// Chat formats: expected strings written by hand from the models' published Jinja templates
// (SmolLM2-Instruct, Qwen2.5-Instruct, Llama-3-Instruct, Llama-2-chat, Zephyr), and recognition
// of the real SmolLM2 template from its GGUF.
#include <gtest/gtest.h>

#include "core/error.h"
#include "generate/chat_template.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"
#include "test_util.h"

namespace elutq {
namespace {

const std::vector<ChatMessage> kUser = {{"user", "Hi there"}};

TEST(ChatTemplate, ChatMLWithTemplateDefaultSystem) {
  // SmolLM2's template writes this system turn when the conversation has none.
  const std::string jinja =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
      "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
      "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
      "{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const ChatTemplate t = chat_template_from_jinja(jinja, "<|im_start|>", "<|im_end|>");
  EXPECT_EQ(t.format, ChatFormat::ChatML);
  EXPECT_EQ(render_chat(t, kUser, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(t, {{"system", "Be brief."}, {"user", "Hi there"}}, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n");
}

TEST(ChatTemplate, Llama3) {
  ChatTemplate t{ChatFormat::Llama3, "", "<|begin_of_text|>", "<|eot_id|>"};
  EXPECT_EQ(render_chat(t, {{"system", "S"}, {"user", " Hi there\n"}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama2FoldsSystemIntoFirstTurn) {
  ChatTemplate t{ChatFormat::Llama2, "", "<s>", "</s>"};
  EXPECT_EQ(render_chat(t, {{"system", "S"}, {"user", "A"}, {"assistant", "B"}, {"user", "C"}},
                        true),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nA [/INST] B </s><s>[INST] C [/INST]");
  EXPECT_THROW(render_chat(t, {{"assistant", "B"}}, true), Error);
}

TEST(ChatTemplate, Zephyr) {
  ChatTemplate t{ChatFormat::Zephyr, "", "<s>", "</s>"};
  EXPECT_EQ(render_chat(t, {{"system", "S"}, {"user", "A"}}, true),
            "<|system|>\nS</s>\n<|user|>\nA</s>\n<|assistant|>\n");
}

TEST(ChatTemplate, UnknownTemplateOrRoleIsAClearError) {
  try {
    chat_template_from_jinja("{{ messages[0].content }}", "", "");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--chat-template"), std::string::npos);
  }
  EXPECT_THROW(chat_template_from_jinja("", "", ""), Error);
  EXPECT_THROW(chat_format_from_name("alpaca"), Error);
  ChatTemplate t;
  EXPECT_THROW(render_chat(t, {{"tool", "x"}}, true), Error);
}

TEST(ChatTemplate, RealSmolLM2TemplateIsRecognised) {
  const std::string path = test::smollm2_path();
  ELUTQ_REQUIRE_FILE(path, "SmolLM2 GGUF");
  auto src = open_model(path);
  const ChatTemplate t = chat_template_from_jinja(src->tokenizer().chat_template, "", "");
  EXPECT_EQ(t.format, ChatFormat::ChatML);
  EXPECT_EQ(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
}

}  // namespace
}  // namespace elutq
