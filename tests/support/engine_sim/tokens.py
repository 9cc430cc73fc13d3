"""The fake engine's tokens: a prompt's are its whitespace-separated words (a chat's, each message's
words after a role marker); an answer's are "tok0 tok1 ...".
"""

from __future__ import annotations


def token_text(i: int) -> str:
    """The i-th generated token's text: the answer is "tok0 tok1 ...", each later token with its space."""
    return f" tok{i}" if i else "tok0"


def generated_text(n: int) -> str:
    return " ".join(f"tok{i}" for i in range(n))


def chat_tokens(messages) -> list[str]:
    """A chat's prompt tokens: a role marker, then the message's words, per message; then the assistant's marker."""
    tokens: list[str] = []
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):  # OpenAI content parts: only the text ones count
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        tokens.append(f"<|{message.get('role', 'user')}|>")
        tokens.extend(str(content).split())
    tokens.append("<|assistant|>")
    return tokens
