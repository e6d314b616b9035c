package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
)

// sideEffectsVariable names the file that side-effect lines are appended to.
const sideEffectsVariable = "DURO_TEST_SIDE_EFFECTS"

var sideEffectsMu sync.Mutex

// recordSideEffect appends one line to the side-effects file; it does nothing when the variable is unset.
func recordSideEffect(line string) {
	path := os.Getenv(sideEffectsVariable)
	if path == "" {
		return
	}
	sideEffectsMu.Lock()
	defer sideEffectsMu.Unlock()
	sink, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(fmt.Sprintf("cannot open %s for appending: %v", path, err))
	}
	defer sink.Close()
	if _, err := sink.WriteString(line + "\n"); err != nil {
		panic(fmt.Sprintf("cannot append to %s: %v", path, err))
	}
}

// countSideEffects counts the recorded lines that start with prefix.
func countSideEffects(prefix string) int {
	path := os.Getenv(sideEffectsVariable)
	if path == "" {
		return 0
	}
	sideEffectsMu.Lock()
	defer sideEffectsMu.Unlock()
	source, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		panic(fmt.Sprintf("cannot read %s: %v", path, err))
	}
	defer source.Close()
	count := 0
	scanner := bufio.NewScanner(source)
	for scanner.Scan() {
		if strings.HasPrefix(scanner.Text(), prefix) {
			count++
		}
	}
	return count
}
