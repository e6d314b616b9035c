package dev.duro.compat;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;

/** Appends side-effect lines to the file named by DURO_TEST_SIDE_EFFECTS, and counts them, so tests see how often each effect really ran. */
public final class SideEffects {
  private static final String PATH_VARIABLE = "DURO_TEST_SIDE_EFFECTS";

  private SideEffects() {}

  /** Appends one line; does nothing when DURO_TEST_SIDE_EFFECTS is unset. */
  public static synchronized void record(String line) {
    String path = System.getenv(PATH_VARIABLE);
    if (path == null || path.isEmpty()) {
      return;
    }
    try {
      Files.writeString(
          Path.of(path),
          line + "\n",
          StandardCharsets.UTF_8,
          StandardOpenOption.CREATE,
          StandardOpenOption.APPEND);
    } catch (IOException e) {
      throw new UncheckedIOException("cannot append to " + path, e);
    }
  }

  /** How many recorded lines start with prefix. */
  public static synchronized long count(String prefix) {
    String path = System.getenv(PATH_VARIABLE);
    if (path == null || path.isEmpty() || !Files.exists(Path.of(path))) {
      return 0;
    }
    try {
      List<String> lines = Files.readAllLines(Path.of(path), StandardCharsets.UTF_8);
      return lines.stream().filter(line -> line.startsWith(prefix)).count();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read " + path, e);
    }
  }
}
