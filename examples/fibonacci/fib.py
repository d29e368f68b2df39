import sys


# Each number in the Fibonacci sequence is the sum of the preceding two numbers
# Traditionally, the first two numbers are 0 and 1
def fib(x):
    if x == 0:
        return 0
    if x == 1:
        return 1
    return fib(x - 1) + fib(x - 2)


if __name__ == "__main__":
    fib_num = int(sys.argv[1])
    print(fib(fib_num))
