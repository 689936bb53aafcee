// C++ leaks: an object whose members own memory (the object is definitely lost, what its members
// own is indirectly lost), an array, a container of strings; a global string and a static local
// vector stay reachable; unique_ptr and delete free theirs.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "leak_common.h"

struct Widget {
    std::vector<int> v;
    std::string name;
    Widget() : v(100, 7), name(50, 'x') {}
};

std::string g_name(100, 'z');

NOINLINE Widget *lk_cxx_object() { return new Widget; }

NOINLINE int *lk_cxx_array()
{
    int *a = new int[1000];
    touch(a, 1000 * sizeof(int));
    return a;
}

NOINLINE void lk_cxx_container()
{
    auto *v = new std::vector<std::string>;
    for (int i = 0; i < 3; i++)
        v->push_back(std::string(40 + i, 'y'));
}

NOINLINE std::vector<double> &keep_static()
{
    static std::vector<double> *s = new std::vector<double>(64, 1.0);
    return *s;
}

NOINLINE void freed()
{
    auto u = std::make_unique<Widget>();
    auto *w = new Widget;
    delete w;
    std::vector<std::string> tmp(10, std::string(100, 'q'));
    (void)u;
}

int main()
{
    Widget *w = lk_cxx_object();
    w = nullptr;
    int *a = lk_cxx_array();
    a = nullptr;
    lk_cxx_container();
    keep_static();
    freed();
    scrub_stack();
    std::printf("cxx: done %zu%s%s\n", g_name.size(), w ? "?" : "", a ? "?" : "");
    return 0;
}
