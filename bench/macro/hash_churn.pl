#!/usr/bin/perl
# Big-hash churn for bench/run-macro: perl's own allocator is off in Debian's build, so every SV,
# hash entry, string buffer and array goes to malloc. Builds nested hashes of 300k+ keys, deletes
# most of them and refills with other shapes (long-lived survivors pin whatever they sit in),
# sorts, splits and joins big strings, and grows buffers by appending.
# Deterministic: prints the same lines under every allocator (the driver hashes stdout).
# Usage: perl hash_churn.pl [scale]   (scale 1.0 = a few seconds on a 2.3 GHz core)
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my $scale = @ARGV ? $ARGV[0] : 1.0;
my $n = int(160_000 * $scale);
my $x = 12345;
sub rnd { $x = ($x * 1103515245 + 12345) % 2147483648; return $x >> 8; }

my $md5 = Digest::MD5->new;

for my $round (1 .. 2) {
    # 1. a big nested hash: key -> { name, tags => [...], blob }
    my %h;
    for my $i (1 .. $n) {
        my $k = sprintf("key-%07d-%d", rnd() % 10_000_000, $i);
        $h{$k} = {
            id   => $i,
            tags => [ map { "t" . (rnd() % 1000) } 1 .. (1 + rnd() % 3) ],
            blob => ("ab" x (4 + rnd() % 60)),
        };
    }
    # 2. delete three quarters, in hash order (scattered over the heap)
    my @keys = keys %h;
    my $del = 0;
    for my $k (@keys) {
        if (rnd() % 4 != 0) { delete $h{$k}; $del++; }
    }
    @keys = ();
    # 3. refill with a different shape: flat strings of other sizes, and arrays of numbers
    my %g;
    for my $i (1 .. $n) {
        my $k = "g" . (rnd() % 1_000_000) . "-$i";
        if ($i % 3) {
            $g{$k} = join(",", map { rnd() % 100000 } 1 .. (2 + rnd() % 30));
        } else {
            $g{$k} = [ map { $_ * 3 } 1 .. (rnd() % 50) ];
        }
    }
    # 4. sort and summarise
    my @sorted = sort { $h{$a}{id} <=> $h{$b}{id} } keys %h;
    my $sum = 0;
    $sum += $h{$_}{id} for @sorted[0 .. ($#sorted < 999 ? $#sorted : 999)];
    $md5->add(scalar(@sorted), " ", $sum, " ", $sorted[0] // "", " ", $sorted[-1] // "");
    # 5. split and join: a big string built by appending, split into fields, rejoined
    my $big = "";
    for my $k (@sorted) { $big .= $k . ":" . length($h{$k}{blob}) . ";"; }
    my @fields = split /;/, $big;
    my %count;
    for my $f (@fields) { my ($a, $b) = split /:/, $f; $count{ substr($a, 0, 6) } += $b; }
    my $joined = join("|", map { "$_=$count{$_}" } sort keys %count);
    $md5->add(length($big), " ", scalar(@fields), " ", md5_hex($joined));
    my @gk = sort keys %g;
    my $glen = 0;
    for my $k (@gk) { my $v = $g{$k}; $glen += ref($v) ? scalar(@$v) : length($v); }
    $md5->add(" ", scalar(@gk), " ", $glen, " ", $del, "\n");
    print "round $round: kept ", scalar(@sorted), " refilled ", scalar(@gk), " deleted $del\n";
    # %h's survivors and %g die here: the next round builds on a heap with holes
}
print "digest ", $md5->hexdigest, "\n";
