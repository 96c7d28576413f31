#!/usr/bin/perl
# File-system primitives for tests/chaos/run.sh.
#
# The writer in run.sh decides every operation; this helper carries one out
# and reports exactly what it replaced, in one process so that the window
# between looking at a file and changing it is microseconds, not the
# milliseconds of a forked cp or rm.  That matters: an agent applying a
# peer's version renames files into place at any moment, and the checker
# may only accept a content as legitimately gone when a writer operation
# provably destroyed it (it held that very inode open, or unlinked it).
#
#   fsop.pl LEDGER SEQ NODE OP ROOT ARGS...   do OP, append records to LEDGER
#   fsop.pl - - - manifest ROOT               print ROOT's manifest
#
# Ledger records, tab separated:
#   seq ms node op path arg status pre post
# status: ok (done), fail (partly done: PRE was destroyed, the new content
# is unknown, e.g. ENOSPC), orphan (a peer's version replaced the file
# while we wrote into it: nothing credible happened), skip (nothing done).
# pre: sha256 of the content the operation destroyed, or "-".
# post: sha256 of the content the operation put at path (or arg), or "-".
# Sub-records: "gone" (a file rm -rf removed: pre), "move" (a file a rename
# carried from path to arg: post).
use strict;
use warnings;
use Digest::SHA;
use Fcntl qw(:DEFAULT :mode SEEK_SET);
use POSIX qw(EEXIST ENOENT);
use Time::HiRes qw(time);

my ($ledger, $seq, $node, $op, $root, @args) = @ARGV;
die "usage: fsop.pl LEDGER SEQ NODE OP ROOT ARGS...\n" unless defined $root;
$root =~ s{/+$}{};
my @out;

sub rec {
	my ($o, $path, $arg, $st, $pre, $post) = @_;
	push @out, join("\t", $o, $path, $arg // '-', $st, $pre // '-', $post // '-');
}

sub flush_records {
	return unless @out;
	my $ms = int((time() - ($ENV{CHAOS_T0} // 0)) * 1000);
	my $text = join('', map { "$seq\t$ms\t$node\t$_\n" } @out);
	open(my $fh, '>>', $ledger) or die "ledger $ledger: $!\n";
	syswrite($fh, $text) == length($text) or die "ledger write: $!\n";
	close($fh);
}

sub sha_fh {
	my ($fh) = @_;
	sysseek($fh, 0, SEEK_SET);
	my $d = Digest::SHA->new(256);
	my $buf;
	while (1) {
		my $n = sysread($fh, $buf, 1 << 20);
		die "read: $!\n" unless defined $n;
		last if $n == 0;
		$d->add($buf);
	}
	return $d->hexdigest;
}

# The deterministic content of a write: a header naming it, then bytes
# from SHA-256 in counter mode (incompressible, different for every tag).
sub content {
	my ($tag, $size) = @_;
	my $s = "chaos $tag\n";
	my $i = 0;
	while (length($s) < $size) {
		$s .= Digest::SHA::sha256("$tag/" . $i++);
	}
	my $min = length("chaos $tag\n");
	return substr($s, 0, $size > $min ? $size : $min);
}

# Every parent of REL is a real directory (never a symlink); with MAKE,
# missing ones are made (mkdir -p).  False when something else is in the way.
sub parents_ok {
	my ($rel, $make) = @_;
	my @parts = split m{/}, $rel;
	pop @parts;
	my $p = $root;
	for my $c (@parts) {
		$p .= "/$c";
		my @st = lstat($p);
		if (!@st) {
			return 0 unless $make && $! == ENOENT;
			next if mkdir($p, 0755);
			return 0 unless $! == EEXIST && -d $p && !-l $p;
			next;
		}
		return 0 unless S_ISDIR($st[2]);
	}
	return 1;
}

sub same_inode {
	my ($fh, $path) = @_;
	my @a = stat($fh);
	my @b = lstat($path);
	return @a && @b && $a[0] == $b[0] && $a[1] == $b[1];
}

sub write_all {
	my ($fh, $data) = @_;
	my $off = 0;
	while ($off < length $data) {
		my $n = syswrite($fh, $data, length($data) - $off, $off);
		return 0 unless defined $n;
		$off += $n;
	}
	return 1;
}

# write REL SIZE TAG: overwrite in place (open, truncate, write), the way
# most programs save; creates the file (and its parents) when absent.
sub op_write {
	my ($rel, $size, $tag) = @_;
	my $full = "$root/$rel";
	my @st = lstat($full);
	return rec('write', $rel, undef, 'skip') if @st && !S_ISREG($st[2]);
	return rec('write', $rel, undef, 'skip') unless parents_ok($rel, 1);
	sysopen(my $fh, $full, O_RDWR | O_CREAT | O_NOFOLLOW, 0644)
		or return rec('write', $rel, undef, 'skip');
	my @fst = stat($fh);
	return rec('write', $rel, undef, 'skip') unless S_ISREG($fst[2]);
	my $pre = $fst[7] > 0 ? sha_fh($fh) : '-';
	my $data = content($tag, $size);
	my $post = Digest::SHA::sha256_hex($data);
	truncate($fh, 0) or return rec('write', $rel, undef, 'skip');
	sysseek($fh, 0, SEEK_SET);
	my $ok = write_all($fh, $data);
	my $mine = same_inode($fh, $full);
	close($fh);
	return rec('write', $rel, undef, 'orphan', '-', '-') unless $mine;
	return rec('write', $rel, undef, 'fail', $pre, '-') unless $ok;
	rec('write', $rel, undef, 'ok', $pre, $post);
}

# append REL SIZE TAG: O_APPEND to an existing file.
sub op_append {
	my ($rel, $size, $tag) = @_;
	my $full = "$root/$rel";
	return rec('append', $rel, undef, 'skip') unless parents_ok($rel, 0);
	sysopen(my $fh, $full, O_RDWR | O_APPEND | O_NOFOLLOW)
		or return rec('append', $rel, undef, 'skip');
	my @fst = stat($fh);
	return rec('append', $rel, undef, 'skip') unless S_ISREG($fst[2]);
	my $pre = $fst[7] > 0 ? sha_fh($fh) : '-';
	my $ok = write_all($fh, content("$tag+", $size));
	my $post = sha_fh($fh);
	my $mine = same_inode($fh, $full);
	close($fh);
	return rec('append', $rel, undef, 'orphan') unless $mine;
	return rec('append', $rel, undef, 'fail', $pre, '-') unless $ok;
	rec('append', $rel, undef, 'ok', $pre, $post);
}

# replace REL SIZE TAG TMPNAME: write TMPNAME beside REL, then rename it
# over REL (an editor's or a package manager's atomic save).
sub op_replace {
	my ($rel, $size, $tag, $tmpname) = @_;
	my $full = "$root/$rel";
	(my $dir = $rel) =~ s{/?[^/]*$}{};
	my $tmprel = $dir eq '' ? $tmpname : "$dir/$tmpname";
	my $tmp = "$root/$tmprel";
	return rec('replace', $rel, $tmprel, 'skip') unless parents_ok($rel, 1);
	my $data = content($tag, $size);
	my $post = Digest::SHA::sha256_hex($data);
	sysopen(my $fh, $tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644)
		or return rec('replace', $rel, $tmprel, 'skip');
	my $ok = write_all($fh, $data);
	close($fh) or $ok = 0;
	unless ($ok) {
		unlink($tmp);
		return rec('replace', $rel, $tmprel, 'skip');
	}
	my ($pre, $old) = ('-', undef);
	my @st = lstat($full);
	if (@st && S_ISDIR($st[2])) {
		unlink($tmp);
		return rec('replace', $rel, $tmprel, 'skip');
	}
	if (@st && S_ISREG($st[2]) && sysopen($old, $full, O_RDONLY | O_NOFOLLOW)) {
		$pre = sha_fh($old);
		# Still the file we hashed, a moment before the rename.
		$pre = '-' unless same_inode($old, $full);
	}
	unless (rename($tmp, $full)) {
		unlink($tmp);
		return rec('replace', $rel, $tmprel, 'skip');
	}
	rec('replace', $rel, $tmprel, 'ok', $pre, $post);
}

# delete REL: unlink a file or a symlink.
sub op_delete {
	my ($rel) = @_;
	my $full = "$root/$rel";
	return rec('delete', $rel, undef, 'skip') unless parents_ok($rel, 0);
	my @st = lstat($full);
	return rec('delete', $rel, undef, 'skip') unless @st && !S_ISDIR($st[2]);
	my $pre = '-';
	if (S_ISREG($st[2])) {
		sysopen(my $fh, $full, O_RDONLY | O_NOFOLLOW)
			or return rec('delete', $rel, undef, 'skip');
		$pre = sha_fh($fh);
		return rec('delete', $rel, undef, 'skip') unless same_inode($fh, $full);
		unlink($full) or return rec('delete', $rel, undef, 'skip');
		return rec('delete', $rel, undef, 'ok', $pre, '-');
	}
	unlink($full) or return rec('delete', $rel, undef, 'skip');
	rec('delete', $rel, undef, 'ok', 'link', '-');
}

# Every regular file under DIR (relative to root) with its hash.
sub files_under {
	my ($rel, $acc) = @_;
	opendir(my $dh, "$root/$rel") or return;
	for my $e (sort grep { $_ ne '.' && $_ ne '..' } readdir $dh) {
		next if $e =~ /^\.krakenfs-/;
		my $r = "$rel/$e";
		my @st = lstat("$root/$r") or next;
		if (S_ISDIR($st[2])) {
			files_under($r, $acc);
		} elsif (S_ISREG($st[2]) && sysopen(my $fh, "$root/$r", O_RDONLY | O_NOFOLLOW)) {
			push @$acc, [$r, sha_fh($fh)];
		}
	}
}

# rename SRC DST: a file, symlink or directory, over DST when DST is a
# file (or an empty directory, for a directory).
sub op_rename {
	my ($src, $dst) = @_;
	my ($s, $d) = ("$root/$src", "$root/$dst");
	return rec('rename', $src, $dst, 'skip')
		unless parents_ok($src, 0) && parents_ok($dst, 0);
	return rec('rename', $src, $dst, 'skip')
		if $src eq $dst || index("$dst/", "$src/") == 0;
	my @st = lstat($s) or return rec('rename', $src, $dst, 'skip');
	my @moved;
	my $fh;
	if (S_ISDIR($st[2])) {
		files_under($src, \@moved);
	} elsif (S_ISREG($st[2])) {
		sysopen($fh, $s, O_RDONLY | O_NOFOLLOW)
			or return rec('rename', $src, $dst, 'skip');
		@moved = ([$src, sha_fh($fh)]);
	}
	my ($pre, $old) = ('-', undef);
	my @dt = lstat($d);
	if (@dt && S_ISREG($dt[2]) && sysopen($old, $d, O_RDONLY | O_NOFOLLOW)) {
		$pre = sha_fh($old);
		$pre = '-' unless same_inode($old, $d);
	}
	return rec('rename', $src, $dst, 'skip') if $fh && !same_inode($fh, $s);
	rename($s, $d) or return rec('rename', $src, $dst, 'skip');
	# A file: the one hashed is the one that moved, or it was not ours.
	@moved = () if $fh && !same_inode($fh, $d);
	rec('rename', $src, $dst, 'ok', $pre, '-');
	for my $m (@moved) {
		my $to = $dst . substr($m->[0], length $src);
		rec('move', $m->[0], $to, 'ok', '-', $m->[1]);
	}
}

sub op_mkdir {
	my ($rel) = @_;
	return rec('mkdir', $rel, undef, 'skip') unless parents_ok($rel, 1);
	my $full = "$root/$rel";
	return rec('mkdir', $rel, undef, 'ok') if mkdir($full, 0755);
	rec('mkdir', $rel, undef, 'skip');
}

sub op_rmdir {
	my ($rel) = @_;
	return rec('rmdir', $rel, undef, 'skip') unless parents_ok($rel, 0);
	my @st = lstat("$root/$rel");
	return rec('rmdir', $rel, undef, 'skip') unless @st && S_ISDIR($st[2]);
	return rec('rmdir', $rel, undef, 'ok') if rmdir("$root/$rel");
	rec('rmdir', $rel, undef, 'skip');
}

# rm -rf, file by file: each file is hashed through the descriptor and
# unlinked only while it is still that file, so every "gone" is exact.
sub rm_tree {
	my ($rel) = @_;
	opendir(my $dh, "$root/$rel") or return;
	for my $e (grep { $_ ne '.' && $_ ne '..' } readdir $dh) {
		my $r = "$rel/$e";
		my $full = "$root/$r";
		my @st = lstat($full) or next;
		if (S_ISDIR($st[2])) {
			rm_tree($r);
			rmdir($full);
		} elsif (S_ISREG($st[2]) && $e !~ /^\.krakenfs-/) {
			sysopen(my $fh, $full, O_RDONLY | O_NOFOLLOW) or next;
			my $h = sha_fh($fh);
			next unless same_inode($fh, $full);
			rec('gone', $r, undef, 'ok', $h, '-') if unlink($full);
		} else {
			unlink($full);
		}
	}
}

sub op_rmrf {
	my ($rel) = @_;
	return rec('rmrf', $rel, undef, 'skip') unless parents_ok($rel, 0);
	my @st = lstat("$root/$rel");
	return rec('rmrf', $rel, undef, 'skip') unless @st && S_ISDIR($st[2]);
	my $gone = 0;
	# An agent may put something into the tree meanwhile: walk again.
	for (1 .. 5) {
		rm_tree($rel);
		if (rmdir("$root/$rel") || !-e "$root/$rel") { $gone = 1; last }
	}
	rec('rmrf', $rel, undef, $gone ? 'ok' : 'fail');
}

sub op_symlink {
	my ($rel, $target) = @_;
	return rec('symlink', $rel, $target, 'skip') unless parents_ok($rel, 1);
	return rec('symlink', $rel, $target, 'ok') if symlink($target, "$root/$rel");
	rec('symlink', $rel, $target, 'skip');
}

# chmod REL MODE: files through the descriptor (the content it changes the
# mode of is recorded: a mode change is a modification, which beats a
# concurrent delete); directories by name.
sub op_chmod {
	my ($rel, $mode) = @_;
	my $full = "$root/$rel";
	return rec('chmod', $rel, $mode, 'skip') unless parents_ok($rel, 0);
	my @st = lstat($full) or return rec('chmod', $rel, $mode, 'skip');
	if (S_ISDIR($st[2])) {
		return rec('chmod', $rel, $mode, chmod(oct($mode), $full) ? 'ok' : 'skip');
	}
	return rec('chmod', $rel, $mode, 'skip') unless S_ISREG($st[2]);
	sysopen(my $fh, $full, O_RDONLY | O_NOFOLLOW)
		or return rec('chmod', $rel, $mode, 'skip');
	my $h = sha_fh($fh);
	chmod(oct($mode), $fh) or return rec('chmod', $rel, $mode, 'skip');
	return rec('chmod', $rel, $mode, 'orphan') unless same_inode($fh, $full);
	rec('chmod', $rel, $mode, 'ok', '-', $h);
}

# fill REL: write random bytes until the file system is full.
sub op_fill {
	my ($rel) = @_;
	my $full = "$root/$rel";
	sysopen(my $fh, $full, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644)
		or return rec('fill', $rel, undef, 'skip');
	open(my $rnd, '<:raw', '/dev/urandom') or die "/dev/urandom: $!\n";
	my ($buf, $total, $ok) = ('', 0, 1);
	while (1) {
		sysread($rnd, $buf, 1 << 20) == (1 << 20) or die "urandom: $!\n";
		my $n = syswrite($fh, $buf);
		if (!defined $n || $n < length $buf) { $ok = 0; last }
		$total += $n;
		last if $total >= (4 << 30);
	}
	close($fh);
	rec('fill', $rel, $total, $ok ? 'ok' : 'fail');
}

# manifest: one line per name under the volumes (ROOT's directories whose
# names do not start with '.'), the agent's .krakenfs-* and the excluded
# *.tmp names aside: path, type, mode, size, sha256 or link target.
sub manifest_walk {
	my ($rel) = @_;
	opendir(my $dh, "$root/$rel") or return;
	for my $e (sort grep { $_ ne '.' && $_ ne '..' } readdir $dh) {
		next if $e =~ /^\.krakenfs-/ || $e =~ /\.tmp$/;
		my $r = $rel eq '' ? $e : "$rel/$e";
		next if $rel eq '' && $e =~ /^\./;
		my @st = lstat("$root/$r") or next;
		my $mode = sprintf('%04o', $st[2] & 07777);
		if (S_ISDIR($st[2])) {
			print "$r\td\t$mode\t-\t-\n";
			manifest_walk($r);
		} elsif (S_ISLNK($st[2])) {
			print "$r\tl\t-\t-\t", (readlink("$root/$r") // '?'), "\n";
		} elsif (S_ISREG($st[2])) {
			my ($h, $fh) = ('?');
			$h = sha_fh($fh) if sysopen($fh, "$root/$r", O_RDONLY | O_NOFOLLOW);
			print "$r\tf\t$mode\t$st[7]\t$h\n";
		} else {
			print "$r\to\t$mode\t-\t-\n";
		}
	}
}

my %ops = (
	write => \&op_write, append => \&op_append, replace => \&op_replace,
	delete => \&op_delete, rename => \&op_rename, mkdir => \&op_mkdir,
	rmdir => \&op_rmdir, rmrf => \&op_rmrf, symlink => \&op_symlink,
	chmod => \&op_chmod, fill => \&op_fill,
);
if ($op eq 'manifest') {
	manifest_walk('');
	exit 0;
}
my $fn = $ops{$op} or die "fsop.pl: unknown operation $op\n";
$fn->(@args);
flush_records();
