// A C++ program with deterministic output that allocates a lot through the standard library:
// std::map, std::unordered_map, std::vector, std::string, std::shared_ptr, exceptions, threads.
// It is run with and without LD_PRELOAD=libbuddyslab.so and the outputs are compared.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

static uint64_t fnv(const std::string &s, uint64_t h = 1469598103934665603ULL)
{
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t lcg(uint64_t &s)
{
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return s >> 33;
}

static std::string maps(int scale)
{
    std::map<std::string, std::vector<int>> m;
    std::unordered_map<int, std::string> u;
    uint64_t seed = 1;
    for (int i = 0; i < 100000 * scale; i++) {
        std::string key = "key-" + std::to_string(lcg(seed) % 20000);
        m[key].push_back(i);
        u[int(lcg(seed) % 50000)] += char('a' + i % 26);
        if (i % 7 == 0)
            m.erase("key-" + std::to_string(lcg(seed) % 20000));
        if (i % 11 == 0)
            u.erase(int(lcg(seed) % 50000));
    }
    uint64_t h = 0;
    size_t total = 0;
    for (auto &kv : m) {
        h = fnv(kv.first, h);
        total += kv.second.size();
    }
    std::vector<std::pair<int, std::string>> uv(u.begin(), u.end());
    std::sort(uv.begin(), uv.end());
    for (auto &kv : uv)
        h = fnv(kv.second, h ^ uint64_t(kv.first));
    std::ostringstream os;
    os << "maps: " << m.size() << " keys, " << total << " values, " << u.size() << " ukeys, hash " << std::hex << h;
    return os.str();
}

static std::string strings(int scale)
{
    std::vector<std::string> v;
    uint64_t seed = 7;
    for (int i = 0; i < 50000 * scale; i++) {
        std::string s(lcg(seed) % 200, char('A' + i % 26));
        s += std::to_string(i);
        if (i % 3 == 0)
            s = s + s;
        v.push_back(std::move(s));
    }
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    std::string all;
    for (size_t i = 0; i < v.size(); i += 10)
        all += v[i];
    std::ostringstream os;
    os << "strings: " << v.size() << " unique, joined " << all.size() << " bytes, hash " << std::hex << fnv(all);
    return os.str();
}

struct Node {
    int val;
    std::vector<std::shared_ptr<Node>> kids;
    std::weak_ptr<Node> parent;
};

static std::string trees(int scale)
{
    auto root = std::make_shared<Node>();
    std::deque<std::shared_ptr<Node>> q{root};
    int n = 1;
    while (n < 60000 * scale) {
        auto cur = q.front();
        q.pop_front();
        for (int k = 0; k < 4; k++) {
            auto c = std::make_shared<Node>();
            c->val = cur->val * 4 + k;
            c->parent = cur;
            cur->kids.push_back(c);
            q.push_back(c);
            n++;
        }
    }
    q.clear();
    long sum = 0;
    std::function<void(const std::shared_ptr<Node> &)> walk = [&](const std::shared_ptr<Node> &x) {
        sum = (sum + x->val) % 1000000007;
        for (auto &k : x->kids)
            walk(k);
    };
    walk(root);
    std::list<std::string> l;
    for (int i = 0; i < 30000; i++)
        l.emplace(i % 2 ? l.begin() : l.end(), std::to_string(i * 31));
    l.sort();
    std::ostringstream os;
    os << "trees: " << n << " nodes, sum " << sum << ", list front " << l.front() << " back " << l.back();
    return os.str();
}

static std::string exceptions()
{
    int caught = 0;
    size_t len = 0;
    for (int i = 0; i < 5000; i++) {
        try {
            if (i % 2)
                throw std::runtime_error(std::string(size_t(i % 500), 'x') + std::to_string(i));
            std::vector<int> v(10);
            (void)v.at(size_t(20 + i));
        } catch (const std::exception &e) {
            caught++;
            len += std::string(e.what()).size();
        }
    }
    return "exceptions: " + std::to_string(caught) + " caught, " + std::to_string(len) + " message bytes";
}

static std::string threads()
{
    const int nt = 8;
    std::vector<uint64_t> res(nt);
    std::mutex mu;
    std::map<int, int> shared;
    std::vector<std::thread> ts;
    for (int t = 0; t < nt; t++)
        ts.emplace_back([t, &res, &mu, &shared] {
            uint64_t seed = uint64_t(t) + 100;
            std::vector<std::unique_ptr<std::string>> v;
            uint64_t h = 0;
            for (int i = 0; i < 40000; i++) {
                v.emplace_back(new std::string(lcg(seed) % 300, char('a' + t)));
                if (v.size() > 500) {
                    h = fnv(*v.front(), h);
                    v.erase(v.begin(), v.begin() + 250);
                }
                if (i % 100 == 0) {
                    std::lock_guard<std::mutex> g(mu);
                    shared[i + t]++;
                }
            }
            res[size_t(t)] = h;
        });
    for (auto &t : ts)
        t.join();
    std::ostringstream os;
    os << "threads:";
    for (auto h : res)
        os << ' ' << std::hex << (h & 0xffffff);
    os << std::dec << ", shared " << shared.size();
    return os.str();
}

int main(int argc, char **argv)
{
    int scale = argc > 1 ? std::atoi(argv[1]) : 1;
    std::puts(maps(scale).c_str());
    std::puts(strings(scale).c_str());
    std::puts(trees(scale).c_str());
    std::puts(exceptions().c_str());
    std::puts(threads().c_str());
    std::puts("done");
    return 0;
}
