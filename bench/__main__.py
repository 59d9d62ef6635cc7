"""Run every benchmark and print its figures."""

from __future__ import annotations

from bench import protocol


def main() -> None:
    print("== protocol core ==")
    for line in protocol.run():
        print(line)


if __name__ == "__main__":
    main()
