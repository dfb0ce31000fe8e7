/* test_install.c - `make install` gives a library, a header and a
 * loopwatch.pc that a program outside the tree can build against. */
#include "lwtest.h"

#include <sys/stat.h>
#include <sys/wait.h>

static int sh(const char *cmd)
{
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST_T(install_pkgconfig_builds_a_program, 120)
{
	char dir[] = "/tmp/lw-install-XXXXXX";
	ASSERT(mkdtemp(dir) != NULL);
	char cmd[4096];

	/* Build into a private folder so the test does not race the build
	 * that is running it. */
	snprintf(cmd, sizeof(cmd),
		 "make -s -C '%s' BUILD='%s/build' install PREFIX='%s/prefix' "
		 ">'%s/make.log' 2>&1",
		 LW_SRC_DIR, dir, dir, dir);
	if (sh(cmd) != 0) {
		snprintf(cmd, sizeof(cmd), "cat '%s/make.log' >&2", dir);
		sh(cmd);
		LWT_FAIL("make install failed");
	}
	struct stat st;
	char path[512];
	snprintf(path, sizeof(path), "%s/prefix/include/loopwatch.h", dir);
	ASSERT_OK(stat(path, &st));
	snprintf(path, sizeof(path), "%s/prefix/lib/pkgconfig/loopwatch.pc",
		 dir);
	ASSERT_OK(stat(path, &st));

	/* A program outside the tree: a timer that fires and stops. */
	snprintf(path, sizeof(path), "%s/hello.c", dir);
	FILE *f = fopen(path, "w");
	ASSERT(f != NULL);
	fputs("#include <loopwatch.h>\n#include <stdio.h>\n"
	      "static void fire(lw_timer_t *t) { puts(\"fired\");"
	      " lw_stop(t->loop); }\n"
	      "int main(void) { lw_loop_t *l; lw_timer_t t;\n"
	      "  if (lw_loop_new(&l, NULL)) return 1;\n"
	      "  lw_timer_init(l, &t); lw_timer_start(&t, fire, 1, 0);\n"
	      "  lw_run(l); lw_loop_free(l); return 0; }\n",
	      f);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && PKG_CONFIG_PATH='%s/prefix/lib/pkgconfig' "
		 "cc -o hello hello.c "
		 "$(PKG_CONFIG_PATH='%s/prefix/lib/pkgconfig' "
		 "pkg-config --cflags --libs loopwatch) "
		 "-Wl,-rpath,'%s/prefix/lib' && ./hello | grep -qx fired",
		 dir, dir, dir, dir);
	ASSERT_EQ(sh(cmd), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	sh(cmd);
}
