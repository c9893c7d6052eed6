package chattemplate

// Phi3Mini is the chat template of microsoft/Phi-3-mini-4k-instruct
// (current revision; the April 2024 one had no system role), the fallback
// when a model's tokenizer_config.json has no chat_template. The "\n" are
// real newlines, as in the JSON-decoded file.
const Phi3Mini = "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
